/**
 * Bundle benchmark: our decrypt + unbundle of an EC2 bundle against
 * `cat parts | openssl enc -d -aes-128-cbc | gzip -dc | tar -xOf -` on the same bundle, in the
 * same run. Both sides hash the image they produce (SHA-256, ours in-process, the reference
 * through sha256sum) and both hashes must equal the original disk's. Ours also checks every
 * part's SHA-1 and the tar stream's SHA-1, which the reference does not: that work is counted
 * against us. Each side runs as its own process; wall time and peak RSS are whole-process.
 *   npm run bench:unbundle
 *
 * S3 mode (BENCH_S3=s3rver, the default, or moto; off skips it): the bundle is uploaded to an S3
 * server in its own process, and the decrypt stage's own code path (functions/bundle/
 * unbundle-to-store.ts, run by bench/unbundle-s3-worker.ts) reads the parts from S3 with the
 * account's key and writes the image into the image store bucket by multipart upload; the stored
 * image's SHA-256 must equal the disk's. Beside it, the same reference pipeline fed by curl from
 * the same server (presigned GETs), so both sides pay for the server's HTTP. And, as a second
 * reference for the storing side, `aws s3 cp` (awscli v2, /usr/bin/aws; skipped when absent) of
 * the image's own bytes into the same image store bucket: what storing those bytes in that server
 * costs without any unbundling. With s3rver, the server's own CPU seconds per run are printed too
 * (it is a separate process, so storing costs CPU the stage's peak RSS and wall time do not show).
 * Environment: BENCH_SIZE_MIB (default 2048), BENCH_REPEAT (default 3), BENCH_DIR (reused when set),
 * BENCH_S3 (s3rver | moto | off), BENCH_MEMORY_LIMIT_MB (the stage's memory bound, default 256).
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'fs';
import { tmpdir } from 'os';
import { basename, join } from 'path';
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { makeS3Client } from '../toolkit/io/object-storage';
import { benchDisk, log, median, sha256File, timedRun } from './bench-support';
import { startS3ServerProcess } from './bench-processes';
import type { UnbundleS3Job } from './unbundle-s3-worker';
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
  const s3Kind = (process.env.BENCH_S3 ?? 's3rver').toLowerCase();
  const s3Rows = s3Kind === 'off' ? undefined : await s3Runs(s3Kind === 'moto' ? 'moto' : 's3rver', bundle, cloud.keyPath, diskSha, repeat, dir);
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`\nUnbundle of a ${sizeMiB} MiB disk (${bundle.partPaths.length} parts), median of ${repeat}, whole process, outputs SHA-256-checked; load average at the end ${load}:`);
  console.log(`| run | wall s | throughput | peak RSS |`);
  console.log(`|---|---|---|---|`);
  console.log(`| ours, local files (part SHA-1s, AES, gunzip, tar, tar SHA-1) | ${median(ours).toFixed(2)} | ${rate(median(ours))} | ${(oursRss / 1024).toFixed(0)} MiB |`);
  console.log(`| openssl enc -d \\| gzip -dc \\| tar -xO, local files | ${median(reference).toFixed(2)} | ${rate(median(reference))} | (several processes) |`);
  if (s3Rows) {
    const { server, stage, stageInner, stageRss, curl, awsCp, memoryLimitMiB } = s3Rows;
    console.log(`| ours, S3 (${server}) → image store: the decrypt stage's unbundle-to-store | ${median(stage).toFixed(2)} (unbundle alone ${median(stageInner).toFixed(2)}) | ${rate(median(stage))} | ${(stageRss / 1024).toFixed(0)} MiB (bound ${memoryLimitMiB} MiB) |`);
    console.log(`| curl (${server}) \\| openssl enc -d \\| gzip -dc \\| tar -xO, nothing stored | ${median(curl).toFixed(2)} | ${rate(median(curl))} | (several processes) |`);
    if (awsCp.length) console.log(`| aws s3 cp of the image's bytes (local file) → image store (${server}), nothing unbundled | ${median(awsCp).toFixed(2)} | ${rate(median(awsCp))} | (awscli v2) |`);
  }
  console.log(`\nours / reference, local files: ${(median(ours) / median(reference)).toFixed(2)}x the time (best ${Math.min(...ours).toFixed(2)} vs ${Math.min(...reference).toFixed(2)} s)`);
  if (s3Rows) console.log(`ours / reference, from S3: ${(median(s3Rows.stage) / median(s3Rows.curl)).toFixed(2)}x the time (best ${Math.min(...s3Rows.stage).toFixed(2)} vs ${Math.min(...s3Rows.curl).toFixed(2)} s); ours also writes the image into the image store, the reference only hashes it`);
  if (s3Rows?.awsCp.length) console.log(`ours / aws s3 cp of the same image bytes into the same store: ${(median(s3Rows.stage) / median(s3Rows.awsCp)).toFixed(2)}x the time (best ${Math.min(...s3Rows.stage).toFixed(2)} vs ${Math.min(...s3Rows.awsCp).toFixed(2)} s)`);
  if (s3Rows?.serverCpu) {
    const cpu = s3Rows.serverCpu;
    const med = (xs: number[]) => (xs.length ? `${median(xs).toFixed(2)} s` : 'not run');
    console.log(`CPU, median: the stage's process ${median(s3Rows.stageCpu).toFixed(2)} s; the ${s3Rows.server} process while the stage ran ${med(cpu.stage)}, while curl read the bundle ${med(cpu.curl)}, while aws s3 cp stored the image ${med(cpu.awsCp)}`);
  }
  if (!process.env.BENCH_DIR) rmSync(dir, { recursive: true, force: true });
}

interface BenchS3 {
  endpoint: string;
  /** The server's own process, when it is one we started (its CPU seconds are read from /proc). */
  pid?: number;
  accessKeyId: string;
  secretAccessKey: string;
  stop(): Promise<void>;
}

/** s3rver (in its own node process, bench/s3-server-process.ts) or moto_server. */
async function startS3(kind: 's3rver' | 'moto'): Promise<BenchS3> {
  if (kind === 'moto') {
    const { startMotoServer } = await import('../test/helpers/moto-server');
    const moto = await startMotoServer();
    return { endpoint: moto.endpoint, accessKeyId: moto.accessKeyId, secretAccessKey: moto.secretAccessKey, stop: () => moto.stop() };
  }
  const server = await startS3ServerProcess('s3rver');
  return { endpoint: server.endpoint, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', pid: server.pid, stop: () => server.stop() };
}

/** User + system CPU seconds a process has used so far (Linux /proc), undefined when unknown. */
function cpuSecondsOfPid(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return undefined;
  }
}

/** Runs `work`, adding the server's CPU seconds meanwhile to `into` when they can be read. */
function withServerCpu<T>(pid: number | undefined, into: number[], work: () => T): T {
  const before = cpuSecondsOfPid(pid);
  const result = work();
  const after = cpuSecondsOfPid(pid);
  if (before !== undefined && after !== undefined) into.push(after - before);
  return result;
}

async function uploadBundle(s3: S3Client, bucket: string, paths: string[]): Promise<void> {
  for (const path of paths) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `bundles/${basename(path)}`, Body: readFileSync(path) }));
}

/**
 * The S3 rows: the stage's code path in its own process (whole-process wall time, and the
 * unbundle's own), and curl | openssl | gzip | tar from the same server, alternating.
 */
async function s3Runs(server: 's3rver' | 'moto', bundle: ReturnType<typeof makeOpensslBundle>, cloudKeyPath: string, diskSha: string, repeat: number, dir: string) {
  const memoryLimitMiB = Number(process.env.BENCH_MEMORY_LIMIT_MB ?? 256);
  const s3Server = await startS3(server);
  const storage = { endpoint: s3Server.endpoint, region: 'us-east-1', accessKeyId: s3Server.accessKeyId, secretAccessKey: s3Server.secretAccessKey, forcePathStyle: true };
  const s3 = makeS3Client(storage);
  const stage: number[] = [];
  const stageInner: number[] = [];
  const curl: number[] = [];
  const awsCp: number[] = [];
  const stageCpu: number[] = [];
  const serverCpu = { stage: [] as number[], curl: [] as number[], awsCp: [] as number[] };
  const aws = existsSync('/usr/bin/aws') ? '/usr/bin/aws' : undefined;
  const awsEnv = { ...process.env, AWS_ACCESS_KEY_ID: s3Server.accessKeyId, AWS_SECRET_ACCESS_KEY: s3Server.secretAccessKey, AWS_DEFAULT_REGION: 'us-east-1', AWS_PAGER: '' };
  let stageRss = 0;
  try {
    await s3.send(new CreateBucketCommand({ Bucket: 'bench-bundles' }));
    log(`uploading the bundle to ${server} (${s3Server.endpoint})`);
    await uploadBundle(s3, 'bench-bundles', [...bundle.partPaths, bundle.manifestPath]);
    const urls = await Promise.all(bundle.partPaths.map((p) => getSignedUrl(s3, new GetObjectCommand({ Bucket: 'bench-bundles', Key: `bundles/${basename(p)}` }), { expiresIn: 6 * 3600 })));
    for (let i = 0; i < repeat; i++) {
      // A reused BENCH_DIR holds the task store of an earlier bench run: each run starts from an empty one.
      for (const suffix of ['', '-wal', '-shm']) rmSync(join(dir, `bench-tasks-${i}.db${suffix}`), { force: true });
      const job: UnbundleS3Job = {
        storage, bucket: 'bench-bundles', manifestKey: `bundles/${basename(bundle.manifestPath)}`, manifestPath: bundle.manifestPath, cloudKeyPath,
        imageBucket: 'imaging-images', memoryLimitMiB, dbPath: join(dir, `bench-tasks-${i}.db`), run: i,
      };
      const run = withServerCpu(s3Server.pid, serverCpu.stage, () => timedRun(process.execPath, [join(__dirname, 'unbundle-s3-worker.js'), JSON.stringify(job)]));
      const report = JSON.parse(run.stdout.trim().split('\n').pop()!) as { sha256: string; size: number; key: string; seconds: number; cpuSeconds: number; maxRssKiB: number };
      if (report.sha256 !== diskSha) throw new Error(`the stage stored an image with SHA-256 ${report.sha256}, the disk is ${diskSha}`);
      await s3.send(new DeleteObjectCommand({ Bucket: job.imageBucket, Key: report.key }));
      stage.push(run.seconds);
      stageInner.push(report.seconds);
      stageCpu.push(report.cpuSeconds);
      stageRss = Math.max(stageRss, report.maxRssKiB);
      const ref = withServerCpu(s3Server.pid, serverCpu.curl, () => timedRun('bash', ['-o', 'pipefail', '-c', 'curl -sf "${@:3}" | openssl enc -d -aes-128-cbc -K "$1" -iv "$2" | gzip -dc | tar -xOf - | sha256sum', '_', bundle.keyHex, bundle.ivHex, ...urls]));
      const refSha = ref.stdout.split(' ')[0];
      if (refSha !== diskSha) throw new Error(`curl | openssl | gzip | tar produced ${refSha}, the disk is ${diskSha}`);
      curl.push(ref.seconds);
      if (aws) {
        // The storing floor: the same image bytes into the same bucket by awscli's own multipart upload.
        const key = `aws-s3-cp-${i}/disk.raw`;
        const copy = withServerCpu(s3Server.pid, serverCpu.awsCp, () => timedRun(aws, ['s3', 'cp', '--quiet', '--endpoint-url', s3Server.endpoint, join(dir, 'disk.raw'), `s3://${job.imageBucket}/${key}`], awsEnv));
        await s3.send(new DeleteObjectCommand({ Bucket: job.imageBucket, Key: key }));
        awsCp.push(copy.seconds);
      }
    }
  } finally {
    s3.destroy();
    await s3Server.stop();
  }
  return { server, stage, stageInner, stageCpu, stageRss, curl, awsCp, serverCpu: s3Server.pid === undefined ? undefined : serverCpu, memoryLimitMiB };
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
