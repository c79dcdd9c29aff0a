/**
 * Benchmark: import a 1 GiB raw file through `imaging serve` (a child process, so its peak RSS
 * is its own) and compare with a plain S3 copy of the same bytes through the same S3 server.
 *
 *   npm run bench:import [-- --size-mib 1024]
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { spawn, type ChildProcess } from 'child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'fs';
import { randomBytes } from 'crypto';
import { tmpdir } from 'os';
import { join } from 'path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { PassThrough, type Readable } from 'stream';
import { clientContext } from '../cli/client-options';
import { uploadImportImage } from '../cli/commands/import-volume';
import { partRanges } from '../toolkit/bundle/import-manifest';

// s3rver has no type declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver');

const sizeMiB = Number(process.argv[process.argv.indexOf('--size-mib') + 1] || 1024) || 1024;
const MiB = 2 ** 20;

function makeImage(path: string, size: number) {
  // Mixed content: random blocks (incompressible) and zero blocks, like a real disk.
  const fd = openSync(path, 'w');
  const block = randomBytes(4 * MiB);
  const zeros = Buffer.alloc(4 * MiB);
  for (let at = 0, i = 0; at < size; at += block.length, i++) writeSync(fd, i % 4 === 3 ? zeros : block, 0, Math.min(block.length, size - at), at);
  closeSync(fd);
}

function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

async function startServe(dataDir: string, s3Endpoint: string, creds: { accessKeyId: string; secretAccessKey: string }): Promise<{ child: ChildProcess; ec2: string }> {
  const child = spawn(process.execPath, [join(__dirname, '../cli/main.js'), 'serve', '--data-dir', dataDir, '--port', '0', '--s3-endpoint', s3Endpoint, '--upload-poll-ms', '200', '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, IMAGING_ACCESS_KEY_ID: creds.accessKeyId, IMAGING_SECRET_ACCESS_KEY: creds.secretAccessKey },
  });
  const ec2 = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /EC2 endpoint:\s+(\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`imaging serve exited with ${code}`)));
  });
  return { child, ec2 };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bench-import-'));
  const image = join(dir, 'disk.raw');
  const size = sizeMiB * MiB;
  makeImage(image, size);
  const s3server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: join(dir, 's3'), vhostBuckets: false });
  const address = await s3server.run();
  const s3Endpoint = `http://127.0.0.1:${address.port}`;
  // One key pair for the service and the user, known to this S3 server too.
  const creds = { accessKeyId: 'AKIABENCHMARK0000001', secretAccessKey: randomBytes(20).toString('hex') };
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- s3rver has no type declarations
  require('s3rver/lib/models/account').DUMMY_ACCOUNT.createKeyPair(creds.accessKeyId, creds.secretAccessKey);
  const serve = await startServe(join(dir, 'data'), s3Endpoint, creds);
  try {
    const ctx = await clientContext({ endpoint: serve.ec2, s3Endpoint, accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey }, {});

    let t = Date.now();
    const up = await uploadImportImage(ctx, image, { format: 'RAW', bucket: 'bench', partSizeMiB: 10, expiresSeconds: 3600, progress: false, concurrency: 4 });
    const uploadSeconds = (Date.now() - t) / 1000;

    // Reference: a plain copy of the same bytes through the same S3 server (GET every part, PUT one object).
    t = Date.now();
    const body = new PassThrough();
    const copy = new Upload({ client: ctx.s3, params: { Bucket: 'bench', Key: 'plain-copy.raw', Body: body }, partSize: 16 * MiB, queueSize: 4 });
    const copied = copy.done();
    for (const r of partRanges(size, 10 * MiB)) {
      const res = await ctx.s3.send(new GetObjectCommand({ Bucket: 'bench', Key: `${up.prefix}disk.raw.part.${r.index}` }));
      for await (const chunk of res.Body as Readable) if (!body.write(chunk)) await new Promise((r2) => body.once('drain', r2));
    }
    body.end();
    await copied;
    const copySeconds = (Date.now() - t) / 1000;

    t = Date.now();
    const created = await ctx.ec2.call('ImportVolume', { 'Image.Format': 'RAW', 'Image.Bytes': size, 'Image.ImportManifestUrl': up.manifestUrl, 'Volume.Size': up.volumeSizeGiB });
    const taskId = created.conversionTask.conversionTaskId;
    let state = 'active';
    let message = '';
    while (state === 'active') {
      await new Promise((r) => setTimeout(r, 200));
      const d = await ctx.ec2.call('DescribeConversionTasks', { 'ConversionTaskId.1': taskId });
      state = d.conversionTasks.item[0].state;
      message = d.conversionTasks.item[0].statusMessage ?? '';
    }
    const importSeconds = (Date.now() - t) / 1000;
    if (state !== 'completed') throw new Error(`import ended ${state}: ${message}`);
    const rss = peakRssMiB(serve.child.pid!);
    const mbps = (n: number) => (size / MiB / n).toFixed(1);
    console.log(`image: ${sizeMiB} MiB raw (3/4 random, 1/4 zeros), S3 server: s3rver on loopback`);
    console.log('| step | seconds | MiB/s |');
    console.log('|---|---|---|');
    console.log(`| client upload (10 MiB parts, 4 at once) | ${uploadSeconds.toFixed(2)} | ${mbps(uploadSeconds)} |`);
    console.log(`| plain S3 copy (GET parts + multipart PUT) | ${copySeconds.toFixed(2)} | ${mbps(copySeconds)} |`);
    console.log(`| import through imaging serve (ImportVolume → completed) | ${importSeconds.toFixed(2)} | ${mbps(importSeconds)} |`);
    console.log(`import / plain copy: ${(importSeconds / copySeconds).toFixed(2)}x`);
    console.log(`imaging serve peak RSS: ${rss} MiB`);
  } finally {
    serve.child.kill('SIGTERM');
    await s3server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`bench failed: ${err.message}`);
  process.exit(1);
});
