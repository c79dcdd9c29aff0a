/**
 * What the conversion benchmarks share: the benchmark disk (real content made with sfdisk and
 * mkfs.ext4), timing qemu-img, timing our converter in its own process, hashing outputs.
 */
import { execFileSync, spawnSync } from 'child_process';
import { createHash, randomFillSync } from 'crypto';
import { closeSync, createReadStream, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from 'fs';
import type { ConvertJob } from './convert-worker';
import { join } from 'path';

const MiB = 1024 * 1024;
const worker = join(__dirname, 'convert-worker.js');

export function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Runs qemu-img; returns its wall time in seconds. */
export function qemuImg(args: string[]): number {
  const started = process.hrtime.bigint();
  const result = spawnSync('qemu-img', args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 30 * 60_000 });
  if (result.status !== 0) throw new Error(`qemu-img ${args.join(' ')}: ${result.stderr || result.signal}`);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** Runs one conversion by our toolkit alone in a child process, so its peak RSS is its own. */
export function runOurs(job: ConvertJob): { seconds: number; peakRssBytes: number } {
  const result = spawnSync(process.execPath, [worker, JSON.stringify(job)], { encoding: 'utf8', maxBuffer: MiB, timeout: 30 * 60_000 });
  if (result.status !== 0) throw new Error((result.stderr || `worker exited with ${result.status}`).trim().replace(/^error: /, ''));
  return JSON.parse(result.stdout.trim().split('\n').pop()!);
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 8 * MiB })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * The test disk: MBR; a 1 GiB ext4 partition filled by mkfs.ext4 -d (random, text and many
 * small files); a 256 MiB random region; 1 MiB random patches every 16 MiB; zeros elsewhere.
 */
export function makeBenchImage(path: string, sizeMiB: number, workDir: string): void {
  const size = sizeMiB * MiB;
  writeFileSync(path, Buffer.alloc(0));
  execFileSync('truncate', ['-s', String(size), path]);
  const partitionMiB = Math.min(1024, Math.floor(sizeMiB / 2));
  execFileSync('sfdisk', ['--quiet', path], { input: `label: dos\nstart=2048, size=${partitionMiB * 2048}, type=83\n` });

  const content = join(workDir, 'rootfs');
  mkdirSync(join(content, 'small'), { recursive: true });
  const random = Buffer.alloc(MiB);
  const randomFile = openSync(join(content, 'random.bin'), 'w');
  for (let i = 0; i < partitionMiB / 4; i++) writeSync(randomFile, randomFillSync(random));
  closeSync(randomFile);
  const text = Buffer.from('The quick brown fox jumps over the lazy imaging service. '.repeat(18000));
  const textFile = openSync(join(content, 'text.log'), 'w');
  for (let i = 0; i < partitionMiB / 16; i++) writeSync(textFile, text);
  closeSync(textFile);
  for (let i = 0; i < 2000; i++) writeFileSync(join(content, 'small', `file${i}.txt`), `file ${i}\n`.repeat(i % 50 + 1));
  const fsImage = join(workDir, 'part1.ext4');
  execFileSync('truncate', ['-s', `${partitionMiB}M`, fsImage]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', content, fsImage], { stdio: 'pipe' });
  execFileSync('dd', [`if=${fsImage}`, `of=${path}`, 'bs=4M', `seek=${MiB}`, 'oflag=seek_bytes', 'conv=notrunc,sparse', 'status=none']);
  rmSync(fsImage);
  rmSync(content, { recursive: true });

  const disk = openSync(path, 'r+');
  const regionStart = (partitionMiB + 128) * MiB;
  const regionMiB = Math.min(256, Math.floor((sizeMiB - partitionMiB - 128) / 4));
  for (let i = 0; i < regionMiB; i++) writeSync(disk, randomFillSync(random), 0, MiB, regionStart + i * MiB);
  for (let at = regionStart + (regionMiB + 16) * MiB; at + MiB <= size; at += 16 * MiB) writeSync(disk, randomFillSync(random), 0, MiB, at);
  closeSync(disk);
}
