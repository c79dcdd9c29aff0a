/**
 * Benchmark: import a 1 GiB raw file through `imaging serve` (a child process, so its peak RSS
 * is its own) and compare with a plain S3 copy of the same bytes through the same S3 server.
 *
 * The copy does the import's transport work (bench/convert-worker.ts PlainCopyJob): the uploaded
 * parts read by 8 ranged GETs at once (the convert stage's read concurrency), the image uploaded
 * through our multipart sink with the stage's part size and queue. The imported object and the
 * copy are both hashed against the file. Times: the import from ImportVolume to completed in a
 * service already running, and with the service's start added; the copy inside its process and
 * its whole process.
 *
 *   npm run bench:import [-- --size-mib 1024]
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'fs';
import { randomBytes } from 'crypto';
import { tmpdir } from 'os';
import { join } from 'path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'crypto';
import { clientContext } from '../cli/client-options';
import { runPlainCopyAsync, sha256File } from './bench-support';
import { peakRssMiB, startServeProcess } from './bench-processes';
import { uploadImportImage } from '../cli/commands/import-volume';
import { partRanges } from '../toolkit/bundle/import-manifest';

// s3rver has no type declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver');

const sizeMiB = Number(process.argv[process.argv.indexOf('--size-mib') + 1] || 1024) || 1024;
const MiB = 2 ** 20;
/** The convert stage's upload, at the default 256 MiB memory limit (functions/convert/convert-stage.ts). */
const STAGE_PART_SIZE = 8 * MiB;
const STAGE_QUEUE = 4;
/** convertImage's default source reads in flight. */
const STAGE_READS = 8;

async function sha256Object(s3: S3Client, bucket: string, key: string): Promise<string> {
  const hash = createHash('sha256');
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  for await (const chunk of object.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
  return hash.digest('hex');
}

function makeImage(path: string, size: number) {
  // Mixed content: random blocks (incompressible) and zero blocks, like a real disk.
  const fd = openSync(path, 'w');
  const block = randomBytes(4 * MiB);
  const zeros = Buffer.alloc(4 * MiB);
  for (let at = 0, i = 0; at < size; at += block.length, i++) writeSync(fd, i % 4 === 3 ? zeros : block, 0, Math.min(block.length, size - at), at);
  closeSync(fd);
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
  let t = Date.now();
  const serve = await startServeProcess(join(dir, 'data'), s3Endpoint, creds, ['--upload-poll-ms', '200']);
  const startSeconds = (Date.now() - t) / 1000;
  try {
    const ctx = await clientContext({ endpoint: serve.ec2, s3Endpoint, accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey }, {});

    t = Date.now();
    const up = await uploadImportImage(ctx, image, { format: 'RAW', bucket: 'bench', partSizeMiB: 10, expiresSeconds: 3600, progress: false, concurrency: 4 });
    const uploadSeconds = (Date.now() - t) / 1000;

    // Reference: the same transport work without a conversion, in its own process (see the header).
    const copy = await runPlainCopyAsync({
      input: partRanges(size, 10 * MiB).map((r) => `s3://bench/${up.prefix}disk.raw.part.${r.index}`),
      output: 's3://bench/plain-copy.raw',
      uploadFile: image,
      s3Endpoint,
      getStreams: STAGE_READS,
      partSize: STAGE_PART_SIZE,
      queueSize: STAGE_QUEUE,
    });

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
    const rss = peakRssMiB(serve.pid);

    // Every output checked: the imported volume and the copy must be the file's bytes (a raw import is byte-identical).
    const want = await sha256File(image);
    const listed = await ctx.s3.send(new ListObjectsV2Command({ Bucket: 'imaging-images', Prefix: `images/${taskId}/` }));
    const imageKey = listed.Contents?.find((object) => object.Key?.endsWith('disk.raw'))?.Key;
    if (!imageKey) throw new Error(`no imported image under imaging-images/images/${taskId}/`);
    const importCheck = (await sha256Object(ctx.s3, 'imaging-images', imageKey)) === want ? 'same bytes as the file' : 'BYTES DIFFER';
    const copyCheck = (await sha256Object(ctx.s3, 'bench', 'plain-copy.raw')) === want ? 'same bytes as the file' : 'BYTES DIFFER';

    const mbps = (n: number) => (size / MiB / n).toFixed(1);
    console.log(`image: ${sizeMiB} MiB raw (3/4 random, 1/4 zeros in 4 MiB blocks), S3 server: s3rver on loopback (in this process), machine shared with other work`);
    console.log('| step | seconds | MiB/s | check |');
    console.log('|---|---|---|---|');
    console.log(`| client upload (10 MiB parts, 4 at once) | ${uploadSeconds.toFixed(2)} | ${mbps(uploadSeconds)} | |`);
    console.log(`| plain copy, in its process (${STAGE_READS} GETs at once + multipart sink, ${STAGE_PART_SIZE / MiB} MiB parts, ${STAGE_QUEUE} at once) | ${copy.seconds.toFixed(2)} | ${mbps(copy.seconds)} | ${copyCheck} |`);
    console.log(`| plain copy, whole process (spawn to exit) | ${copy.processSeconds.toFixed(2)} | ${mbps(copy.processSeconds)} | |`);
    console.log(`| import, service running (ImportVolume → completed, polled every 200 ms) | ${importSeconds.toFixed(2)} | ${mbps(importSeconds)} | ${importCheck} |`);
    console.log(`| import, with the service's start (imaging serve spawn → ready: ${startSeconds.toFixed(2)} s) | ${(startSeconds + importSeconds).toFixed(2)} | ${mbps(startSeconds + importSeconds)} | |`);
    console.log(`import / plain copy: ${(importSeconds / copy.seconds).toFixed(2)}x in-process, ${((startSeconds + importSeconds) / copy.processSeconds).toFixed(2)}x whole process`);
    console.log(`imaging serve peak RSS: ${rss} MiB; plain copy peak RSS: ${Math.round(copy.peakRssBytes / MiB)} MiB`);
    console.log('What differs: the import also runs the manifest, decrypt (part checks), validate and register stages and their task');
    console.log('updates; s3rver has no UploadPartCopy, so both the import and the copy upload every zero byte.');
  } finally {
    await serve.stop();
    await s3server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`bench failed: ${err.message}`);
  process.exit(1);
});
