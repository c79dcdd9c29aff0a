/**
 * What the conversion benchmarks share: the benchmark disk (real content made with sfdisk and
 * mkfs.ext4), timing qemu-img, timing our converter (or a plain S3 copy) in its own process,
 * another process's CPU time, hashing outputs.
 */
import { execFileSync, spawn, spawnSync } from 'child_process';
import { createHash, randomFillSync } from 'crypto';
import { closeSync, copyFileSync, createReadStream, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync, type Dirent } from 'fs';
import type { ConvertJob, PlainCopyJob, WorkerResult } from './convert-worker';
import { join } from 'path';

const MiB = 1024 * 1024;
const worker = join(__dirname, 'convert-worker.js');

/**
 * BENCH_PIN=1: ours, the plain copy and qemu-img run on CPU 0 and the S3 server on CPU 1 (with
 * taskset), so the server never takes our core: the S3 rows then compare our conversion with
 * the same compute as the file rows, as against a remote S3. Needs 2 CPUs or more.
 */
export const pinned = process.env.BENCH_PIN === '1';

/** `command args` as run on `role`'s CPU when pinned, else unchanged. */
export function onCpuOf(role: 'client' | 'server', command: string, args: string[]): [string, string[]] {
  return pinned ? ['taskset', ['-c', role === 'client' ? '0' : '1', command, ...args]] : [command, args];
}

export function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Runs qemu-img; returns its wall time in seconds. */
export function qemuImg(args: string[]): number {
  const started = process.hrtime.bigint();
  const result = spawnSync(...onCpuOf('client', 'qemu-img', args), { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 30 * 60_000 });
  if (result.status !== 0) throw new Error(`qemu-img ${args.join(' ')}: ${result.stderr || result.signal}`);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** Runs one conversion by our toolkit alone in a child process, so its peak RSS is its own. */
export function runOurs(job: ConvertJob): TimedWorkerResult {
  return runWorker(job);
}

/** Runs the plain S3 copy an S3 → S3 conversion is compared with, in a child process like ours. */
export function runPlainCopy(job: Omit<PlainCopyJob, 'kind'>): TimedWorkerResult {
  return runWorker({ kind: 'plain-copy', ...job });
}

/** A worker's own figures, plus its whole process's wall time as seen from here. */
export interface TimedWorkerResult extends WorkerResult {
  /** Spawn to exit: Node's start and module loading included, as qemu-img's times include its own. */
  processSeconds: number;
}

function runWorker(job: ConvertJob | PlainCopyJob): TimedWorkerResult {
  const started = process.hrtime.bigint();
  const result = spawnSync(...onCpuOf('client', process.execPath, [worker, JSON.stringify(job)]), { encoding: 'utf8', maxBuffer: MiB, timeout: 30 * 60_000 });
  const processSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.status !== 0) throw new Error((result.stderr || `worker exited with ${result.status}`).trim().replace(/^error: /, ''));
  return { ...JSON.parse(result.stdout.trim().split('\n').pop()!), processSeconds };
}

/**
 * runPlainCopy without blocking this process: for a caller whose S3 server runs in this very
 * process (spawnSync would stop it from answering the copy).
 */
export function runPlainCopyAsync(job: Omit<PlainCopyJob, 'kind'>): Promise<TimedWorkerResult> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(...onCpuOf('client', process.execPath, [worker, JSON.stringify({ kind: 'plain-copy', ...job })]), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk) => (stdout += chunk));
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    child.once('error', reject);
    child.once('exit', (code) => {
      const processSeconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code !== 0) reject(new Error((stderr || `worker exited with ${code}`).trim().replace(/^error: /, '')));
      else resolve({ ...JSON.parse(stdout.trim().split('\n').pop()!), processSeconds });
    });
  });
}

/**
 * qemu-img compare of `image` (format `format`) with the raw disk `raw`: the output reads back as
 * that disk through qemu's own driver. Returns a short verdict for a table.
 */
export function compareWithRaw(raw: string, image: string, format: string): string {
  const compare = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', format, raw, image], { encoding: 'utf8' });
  return compare.status === 0 ? 'qemu-img compare: identical' : `qemu-img compare: DIFFERS (${(compare.stdout || compare.stderr).trim().split('\n')[0]})`;
}

let clockTicksPerSecond: number | undefined;

/** User + system CPU seconds another process (an S3 server) has used so far, from /proc. */
export function cpuSecondsOf(pid: number): number {
  clockTicksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  // Fields after the command name, which is in parentheses and may hold spaces: utime and stime are the 12th and 13th.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond;
}

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 8 * MiB })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Runs a command to completion; its wall seconds and standard output (a failure throws with its stderr). */
export function timedRun(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): { seconds: number; stdout: string } {
  const start = process.hrtime.bigint();
  const run = spawnSync(command, args, { env, maxBuffer: 16 * MiB });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (run.status !== 0) throw new Error(`${command} failed: ${run.stderr.toString().slice(0, 2000)}`);
  return { seconds, stdout: run.stdout.toString() };
}

/** `dir`/disk.raw, made by makeBenchImage at `sizeMiB` unless it is there already (BENCH_DIR reuses it). */
export function benchDisk(dir: string, sizeMiB: number): string {
  const disk = join(dir, 'disk.raw');
  if (!existsSync(disk)) {
    log(`making a ${sizeMiB} MiB bench disk`);
    makeBenchImage(disk, sizeMiB, dir);
  }
  return disk;
}

/**
 * The test disk: MBR; a 1 GiB ext4 partition filled by mkfs.ext4 -d with what an OS disk holds
 * (up to half the partition of this machine's own libraries and shared files, copied in a fixed
 * order), an eighth of random bytes (compressed or encrypted files), text and many small files;
 * a 256 MiB random region; 1 MiB random patches every 16 MiB; zeros elsewhere.
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
  for (let i = 0; i < partitionMiB / 8; i++) writeSync(randomFile, randomFillSync(random));
  closeSync(randomFile);
  const text = Buffer.from('The quick brown fox jumps over the lazy imaging service. '.repeat(18000));
  const textFile = openSync(join(content, 'text.log'), 'w');
  for (let i = 0; i < partitionMiB / 16; i++) writeSync(textFile, text);
  closeSync(textFile);
  for (let i = 0; i < 2000; i++) writeFileSync(join(content, 'small', `file${i}.txt`), `file ${i}\n`.repeat(i % 50 + 1));
  copySystemFiles(['/usr/lib', '/usr/share'], join(content, 'usr'), (partitionMiB / 2) * MiB);
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

/** Copies regular files from `roots` (in name order, depth first) into `into` until `budget` bytes are copied. */
function copySystemFiles(roots: string[], into: string, budget: number): void {
  let left = budget;
  const walk = (from: string, to: string): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(from, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    } catch {
      return; // unreadable directory
    }
    for (const entry of entries) {
      if (left <= 0) return;
      const source = join(from, entry.name);
      if (entry.isDirectory()) walk(source, join(to, entry.name));
      else if (entry.isFile()) {
        try {
          const { size } = statSync(source);
          if (size > left) continue;
          mkdirSync(to, { recursive: true });
          copyFileSync(source, join(to, entry.name));
          left -= size;
        } catch {
          // unreadable file: skip it
        }
      }
    }
  };
  for (const root of roots) walk(root, join(into, root.replace(/^\//, '').replace(/\//g, '_')));
}
