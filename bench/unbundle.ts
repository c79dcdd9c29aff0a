/**
 * Bundle benchmark: our decrypt + unbundle of an EC2 bundle against
 * `cat parts | openssl enc -d -aes-128-cbc | gzip -dc | tar -xOf -` on the same bundle, in the
 * same run. Both sides hash the image they produce (SHA-256, ours in-process, the reference
 * through sha256sum) and both hashes must equal the original disk's. Ours also checks every
 * part's SHA-1 and the tar stream's SHA-1, which the reference does not: that work is counted
 * against us. Each side runs as its own process; wall time and peak RSS are whole-process.
 *   npm run bench:unbundle
 * Environment: BENCH_SIZE_MIB (default 2048), BENCH_REPEAT (default 3), BENCH_DIR (reused when set).
 */
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { benchDisk, log, sha256File, timedRun } from './bench-support';
import { makeKeyPair, makeOpensslBundle } from '../test/helpers/euca-bundle';
import { parseBundleManifest } from '../toolkit/bundle/bundle-manifest';
import { unwrapBundleKey } from '../toolkit/bundle/bundle-keys';
import { unbundle } from '../toolkit/bundle/unbundle';

const MiB = 1024 * 1024;

/** The child process: unbundle to a hash, print JSON with the hash and peak RSS. */
async function worker(manifestPath: string, dir: string, cloudKeyPath: string): Promise<void> {
  const manifest = parseBundleManifest(readFileSync(manifestPath));
  const cipher = unwrapBundleKey(manifest, readFileSync(cloudKeyPath, 'utf8'));
  const hash = createHash('sha256');
  const zeros = Buffer.alloc(MiB);
  const result = await unbundle({
    manifest,
    cipher,
    readPart: async (part) => readFileSync(join(dir, part.filename)),
    output: {
      write: async (chunk) => void hash.update(chunk),
      writeZeros: async (length) => {
        for (let left = length; left > 0; left -= MiB) hash.update(left >= MiB ? zeros : zeros.subarray(0, left));
      },
    },
  });
  process.stdout.write(JSON.stringify({ sha256: hash.digest('hex'), size: result.size, maxRssKiB: process.resourceUsage().maxRSS }) + '\n');
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function main(): Promise<void> {
  const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 2048);
  const repeat = Math.max(1, Number(process.env.BENCH_REPEAT ?? 3));
  const dir = process.env.BENCH_DIR ?? mkdtempSync(join(tmpdir(), 'imaging-bench-bundle-'));
  const disk = benchDisk(dir, sizeMiB);
  const diskSha = await sha256File(disk);
  const cloud = makeKeyPair(dir, 'cloud');
  const user = makeKeyPair(dir, 'user');
  log('bundling it with tar | gzip | openssl enc, 10 MiB parts');
  const bundle = makeOpensslBundle({ dir, imagePath: disk, prefix: 'bench', partSize: 10 * MiB, cloud, user });
  log(`bundle: ${bundle.partPaths.length} parts, ${(bundle.ciphertextBytes / MiB).toFixed(0)} MiB of ciphertext`);

  const ours: number[] = [];
  const reference: number[] = [];
  let oursRss = 0;
  for (let i = 0; i < repeat; i++) {
    execFileSync('sync');
    const run = timedRun(process.execPath, [__filename, 'worker', bundle.manifestPath, dir, cloud.keyPath]);
    const report = JSON.parse(run.stdout) as { sha256: string; size: number; maxRssKiB: number };
    if (report.sha256 !== diskSha) throw new Error(`ours produced ${report.sha256}, the disk is ${diskSha}`);
    ours.push(run.seconds);
    oursRss = Math.max(oursRss, report.maxRssKiB);
    execFileSync('sync');
    const ref = timedRun('bash', ['-o', 'pipefail', '-c', 'cat "${@:3}" | openssl enc -d -aes-128-cbc -K "$1" -iv "$2" | gzip -dc | tar -xOf - | sha256sum', '_', bundle.keyHex, bundle.ivHex, ...bundle.partPaths]);
    const refSha = ref.stdout.split(' ')[0];
    if (refSha !== diskSha) throw new Error(`the reference produced ${refSha}, the disk is ${diskSha}`);
    reference.push(ref.seconds);
  }
  const size = statSync(disk).size;
  const rate = (s: number) => `${(size / MiB / s).toFixed(0)} MiB/s`;
  console.log(`\nUnbundle of a ${sizeMiB} MiB disk (${bundle.partPaths.length} parts), median of ${repeat}, whole process, outputs SHA-256-checked:`);
  console.log(`| run | wall s | throughput | peak RSS |`);
  console.log(`|---|---|---|---|`);
  console.log(`| ours (part SHA-1s, AES, gunzip, tar, tar SHA-1) | ${median(ours).toFixed(2)} | ${rate(median(ours))} | ${(oursRss / 1024).toFixed(0)} MiB |`);
  console.log(`| openssl enc -d \\| gzip -dc \\| tar -xO | ${median(reference).toFixed(2)} | ${rate(median(reference))} | (several processes) |`);
  console.log(`\nours / reference: ${(median(ours) / median(reference)).toFixed(2)}x the time (best ${Math.min(...ours).toFixed(2)} vs ${Math.min(...reference).toFixed(2)} s)`);
  if (!process.env.BENCH_DIR) rmSync(dir, { recursive: true, force: true });
}

if (process.argv[2] === 'worker') {
  worker(process.argv[3], process.argv[4], process.argv[5]).catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
