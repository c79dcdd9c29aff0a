/**
 * Bundling benchmark: what BundleInstance runs on an instance's disk (toolkit/bundle/bundle-writer:
 * tar, SHA-1 of the tar stream, gzip, AES-128-CBC, 10 MiB parts with their SHA-1s, the key
 * wrapped for two certificates, an RSA-SHA1 signed manifest) against
 * `tar -c | gzip | openssl enc -aes-128-cbc | split -b 10M` on the same disk, in the same run.
 * Both write their parts to local files, so the figure is the bundling itself; the export stage
 * adds the transfers (image store in, user's bucket out). Ours is checked by unbundling it with
 * the cloud key (verifying its signature against the cloud certificate) to the disk's SHA-256.
 * Each side runs as its own process; wall time and peak RSS are whole-process.
 *   npm run bench:bundle-instance
 * Environment: BENCH_SIZE_MIB (default 2048), BENCH_REPEAT (default 3), BENCH_DIR (reused when set).
 */
import { execFileSync } from 'child_process';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'fs';
import { writeFile } from 'fs/promises';
import { tmpdir } from 'os';
import { join } from 'path';
import { unbundleFiles } from '../cli/commands/bundle-files';
import { bundleImage } from '../toolkit/bundle/bundle-writer';
import { cloudCertificate, ensureCloudKey } from '../toolkit/bundle/cloud-key';
import { benchDisk, median, sha256File, timedRun } from './bench-support';

const MiB = 1024 * 1024;
const PART = 10 * MiB;

/** The child process: bundle the disk into `out`, print JSON with its peak RSS. */
async function worker(disk: string, out: string, cloudKeyPath: string): Promise<void> {
  const cloudKey = readFileSync(cloudKeyPath, 'utf8');
  const cert = cloudCertificate(cloudKey);
  const result = await bundleImage({
    name: 'disk.raw',
    prefix: 'disk',
    image: createReadStream(disk, { highWaterMark: MiB }),
    size: statSync(disk).size,
    partSize: PART,
    cloudCertificate: cert,
    userCertificate: cert,
    signingKey: cloudKey,
    user: '123456789012',
    writePart: (filename, bytes) => writeFile(join(out, filename), bytes),
  });
  writeFileSync(join(out, result.manifestName), result.manifestXml);
  process.stdout.write(JSON.stringify({ parts: result.parts.length, bundledSize: result.bundledSize, maxRssKiB: process.resourceUsage().maxRSS }) + '\n');
}


async function main(): Promise<void> {
  const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 2048);
  const repeat = Math.max(1, Number(process.env.BENCH_REPEAT ?? 3));
  const dir = process.env.BENCH_DIR ?? mkdtempSync(join(tmpdir(), 'imaging-bench-bundle-instance-'));
  const disk = benchDisk(dir, sizeMiB);
  const diskSha = await sha256File(disk);
  const cloudKeyPath = join(dir, 'cloud-key.pem');
  const cloudCertPath = join(dir, 'cloud-cert.pem');
  writeFileSync(cloudCertPath, cloudCertificate(ensureCloudKey(cloudKeyPath)));
  const key = '00112233445566778899aabbccddeeff';

  const ours: number[] = [];
  const reference: number[] = [];
  let oursRss = 0;
  let report: { parts: number; bundledSize: number } | undefined;
  for (let i = 0; i < repeat; i++) {
    const out = join(dir, 'ours');
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out);
    execFileSync('sync');
    const run = timedRun(process.execPath, [__filename, 'worker', disk, out, cloudKeyPath]);
    const parsed = JSON.parse(run.stdout) as { parts: number; bundledSize: number; maxRssKiB: number };
    report = parsed;
    ours.push(run.seconds);
    oursRss = Math.max(oursRss, parsed.maxRssKiB);
    if (i === 0) {
      const unbundled = await unbundleFiles(join(out, 'disk.manifest.xml'), { privateKey: cloudKeyPath, cert: cloudCertPath, destination: join(dir, 'check'), progress: false });
      const sha = await sha256File(unbundled.path);
      if (unbundled.signature !== 'verified' || sha !== diskSha) throw new Error(`our bundle unbundles to ${sha} (signature ${unbundled.signature}), the disk is ${diskSha}`);
      rmSync(join(dir, 'check'), { recursive: true, force: true });
    }

    const refOut = join(dir, 'reference');
    rmSync(refOut, { recursive: true, force: true });
    mkdirSync(refOut);
    execFileSync('sync');
    reference.push(timedRun('bash', ['-o', 'pipefail', '-c', 'tar -cf - -C "$1" disk.raw | gzip | openssl enc -aes-128-cbc -K "$2" -iv "$2" | split -b 10485760 -d -a 3 - "$3/disk.part."', '_', dir, key, refOut]).seconds);
  }
  const size = statSync(disk).size;
  const rate = (s: number) => `${(size / MiB / s).toFixed(0)} MiB/s`;
  console.log(`\nBundling a ${sizeMiB} MiB disk into 10 MiB parts (ours: ${report!.parts} parts, ${(report!.bundledSize / MiB).toFixed(0)} MiB), median of ${repeat}, whole process; ours unbundled and SHA-256-checked:`);
  console.log('| run | wall s | throughput | peak RSS |');
  console.log('|---|---|---|---|');
  console.log(`| ours (tar + SHA-1, gzip, AES, part SHA-1s, signed manifest) | ${median(ours).toFixed(2)} | ${rate(median(ours))} | ${(oursRss / 1024).toFixed(0)} MiB |`);
  console.log(`| tar -c \\| gzip \\| openssl enc \\| split | ${median(reference).toFixed(2)} | ${rate(median(reference))} | (several processes) |`);
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
