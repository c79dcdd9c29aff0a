/**
 * Real disk content for tests: an MBR-partitioned disk whose first partition holds an ext4
 * filesystem made by mkfs.ext4 -d from real files, followed by random and zero regions. Sizes
 * are deliberately not multiples of any cluster, grain or block size.
 */
import { execFileSync } from 'child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync, writeSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';

export function tempDir(prefix = 'imaging-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Pseudo-random but reproducible bytes (so failures can be reproduced). */
export function seededBytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export interface MadeDisk { path: string; size: number }

/**
 * Makes a raw disk of `sizeBytes` (default 48 MiB + 12345 bytes): MBR with one Linux partition
 * (1 MiB .. 33 MiB) holding ext4 with a few files, a 3 MiB random region at 36 MiB, zeros elsewhere,
 * and random bytes in the last odd-sized tail.
 */
export function makeRawDisk(dir: string, name = 'disk.raw', sizeBytes = 48 * 1024 * 1024 + 12345): MadeDisk {
  const path = join(dir, name);
  const mib = 1024 * 1024;
  writeFileSync(path, Buffer.alloc(0));
  execFileSync('truncate', ['-s', String(sizeBytes), path]);
  execFileSync('sfdisk', ['--quiet', path], { input: 'label: dos\nstart=2048, size=65536, type=83\n' });
  const content = join(dir, 'rootfs');
  mkdirSync(join(content, 'etc'), { recursive: true });
  writeFileSync(join(content, 'etc', 'os-release'), 'NAME="Test Linux"\nID=testlinux\nVERSION_ID="1.0"\n');
  writeFileSync(join(content, 'random.bin'), seededBytes(2 * mib + 777, 7));
  writeFileSync(join(content, 'text.txt'), 'hello imaging\n'.repeat(5000));
  const fsImage = join(dir, 'part1.ext4');
  execFileSync('truncate', ['-s', String(32 * mib), fsImage]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', content, fsImage], { stdio: 'pipe' });
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, readFileSync(fsImage), 0, 32 * mib, mib);
    if (sizeBytes > 39 * mib) writeSync(fd, seededBytes(3 * mib, 11), 0, 3 * mib, 36 * mib);
    const tail = Math.min(sizeBytes % mib || mib, sizeBytes - 39 * mib);
    if (tail > 0) writeSync(fd, seededBytes(tail, 13), 0, tail, sizeBytes - tail);
  } finally {
    closeSync(fd);
  }
  return { path, size: sizeBytes };
}

/** Runs qemu-img with arguments; returns stdout. */
export function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** qemu-img's own raw conversion of a file, for byte comparison. */
export function qemuToRaw(input: string, output: string, inputFormat?: string): Buffer {
  qemuImg('convert', ...(inputFormat ? ['-f', inputFormat] : []), '-O', 'raw', input, output);
  return readFileSync(output);
}
