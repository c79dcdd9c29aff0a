/**
 * One benchmark job alone in its own process, so its peak memory and CPU time are its own:
 *   node dist/bench/convert-worker.js '<json job>'
 * A job is a conversion by our toolkit (ConvertJob), or the reference an S3 → S3 conversion is
 * held against (PlainCopyJob). Prints one JSON line: WorkerResult.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import type { S3Client } from '@aws-sdk/client-s3';
import { createReadStream, readFileSync, statSync } from 'fs';
import { convertOpenedImage, outputSizeBound } from '../toolkit/convert/convert-image';
import type { DiskImageWriter } from '../toolkit/formats/format';
import { openImage } from '../toolkit/formats/registry';
import { FileSink } from '../toolkit/io/file-sink';
import { FileSource } from '../toolkit/io/file-source';
import { makeS3Client } from '../toolkit/io/object-storage';
import { S3MultipartSink } from '../toolkit/io/s3-multipart-sink';
import { S3ObjectSource } from '../toolkit/io/s3-object-source';
import { isS3Url, parseS3Url, type S3Location } from '../toolkit/io/s3-url';
import { writeSkippingZeroBlocks } from '../toolkit/io/zeros';

const MiB = 1024 * 1024;

/** How an S3 output is uploaded, by our sink and by the plain copy alike. */
export interface UploadTuning {
  /** Bytes per part. Default 16 MiB. */
  partSize?: number;
  /** Parts uploading at once. Default 4. */
  queueSize?: number;
}

export interface ConvertJob extends UploadTuning {
  kind?: 'convert';
  input: string;
  output: string;
  outputFormat: DiskImageWriter['name'];
  s3Endpoint?: string;
  /** convertImage's source reads in flight (its default when absent). */
  readConcurrency?: number;
  /** convertImage's memory bound (its default when absent). */
  memoryLimitBytes?: number;
}

/**
 * The same bytes moved through the same server with no conversion, doing the same transport work
 * as a conversion: the input object(s) read by `getStreams` ranged GETs at once (through
 * S3ObjectSource, the reader our converter uses) and discarded, while a local file of the
 * output's bytes (qemu-img's output) is uploaded through our S3MultipartSink with the same parts,
 * queue and expected size, its all-zero 64 KiB blocks handed to writeZeros as our raw writer
 * does, so that where the server copies zero parts (UploadPartCopy) the copy does too.
 * What differs from a conversion: no decoding or encoding, and the output's bytes come from a
 * local file (the page cache) instead of from the input.
 */
export interface PlainCopyJob extends UploadTuning {
  kind: 'plain-copy';
  /** One s3:// URL, or several read one after another as one stream of ranges (an import's parts). */
  input: string | string[];
  output: string;
  uploadFile: string;
  s3Endpoint: string;
  getStreams: number;
}

export interface WorkerResult {
  seconds: number;
  peakRssBytes: number;
  /** RSS once the modules are loaded, before the job starts: what the job adds is peak minus this. */
  baselineRssBytes: number;
  /** User + system CPU of the whole process (all threads). */
  cpuSeconds: number;
  bytesWritten: number;
}

/** Peak resident set size of this process, from the kernel's high-water mark. */
export function peakRssBytes(): number {
  const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return match ? Number(match[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

function s3ClientFor(endpoint: string): S3Client {
  return makeS3Client({ endpoint, region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', forcePathStyle: true });
}

async function convert(job: ConvertJob): Promise<number> {
  const s3 = job.s3Endpoint ? s3ClientFor(job.s3Endpoint) : undefined;
  const source = isS3Url(job.input) ? await S3ObjectSource.open(s3!, parseS3Url(job.input).bucket, parseS3Url(job.input).key) : await FileSource.open(job.input);
  // Opened first, as `imaging convert` does: the output's size bound sizes (and lets cut) the upload's parts.
  const reader = await openImage(source);
  const expectedSize = outputSizeBound(reader.info.virtualSize);
  const sink = isS3Url(job.output)
    ? new S3MultipartSink(s3!, parseS3Url(job.output).bucket, parseS3Url(job.output).key, { partSize: job.partSize ?? 16 * MiB, queueSize: job.queueSize ?? 4, expectedSize })
    : // Not durable: qemu-img convert, the baseline, does not fsync its output either.
      await FileSink.create(job.output, undefined, { durable: process.env.BENCH_DURABLE === '1' });
  const result = await convertOpenedImage(reader, { source, sink, output: job.outputFormat, readConcurrency: job.readConcurrency, memoryLimitBytes: job.memoryLimitBytes });
  await reader.close();
  await source.close();
  s3?.destroy();
  return result.bytesWritten;
}

async function plainCopy(job: PlainCopyJob): Promise<number> {
  const s3 = s3ClientFor(job.s3Endpoint);
  try {
    const [, written] = await Promise.all([
      readInRanges(s3, (Array.isArray(job.input) ? job.input : [job.input]).map(parseS3Url), job.getStreams),
      uploadThroughSink(s3, parseS3Url(job.output), job.uploadFile, job.partSize ?? 16 * MiB, job.queueSize ?? 4),
    ]);
    return written;
  } finally {
    s3.destroy();
  }
}

/**
 * Reads the objects whole, 4 MiB ranges in order, `streams` of them at once, through the same
 * reader our converter uses (S3ObjectSource), and discards the bytes.
 */
async function readInRanges(s3: S3Client, objects: S3Location[], streams: number): Promise<number> {
  const sources = await Promise.all(objects.map(({ bucket, key }) => S3ObjectSource.open(s3, bucket, key)));
  const ranges = sources.flatMap((source) => Array.from({ length: Math.ceil(source.size / (4 * MiB)) }, (_, i) => ({ source, at: i * 4 * MiB, length: Math.min(4 * MiB, source.size - i * 4 * MiB) })));
  let next = 0;
  const lane = async (): Promise<void> => {
    const buffer = Buffer.allocUnsafe(4 * MiB);
    while (next < ranges.length) {
      const { source, at, length } = ranges[next++];
      await source.readInto(at, buffer.subarray(0, length));
    }
  };
  await Promise.all(Array.from({ length: streams }, lane));
  await Promise.all(sources.map((source) => source.close()));
  return sources.reduce((sum, source) => sum + source.size, 0);
}

/**
 * Uploads a local file through S3MultipartSink as a conversion's output goes: same part size,
 * queue and expected size (so parts are cut at long zero runs alike), all-zero 64 KiB blocks
 * handed to writeZeros (so zero parts are copied server-side where the server can).
 */
async function uploadThroughSink(s3: S3Client, { bucket, key }: S3Location, path: string, partSize: number, queueSize: number): Promise<number> {
  const size = statSync(path).size;
  const sink = new S3MultipartSink(s3, bucket, key, { partSize, queueSize, expectedSize: outputSizeBound(size) });
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) await writeSkippingZeroBlocks(chunk as Buffer, sink);
    return (await sink.finish()).size;
  } catch (error) {
    await sink.abort().catch(() => undefined);
    throw error;
  }
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as ConvertJob | PlainCopyJob;
  const baselineRssBytes = process.memoryUsage().rss;
  const started = process.hrtime.bigint();
  const cpuBefore = process.cpuUsage();
  const bytesWritten = job.kind === 'plain-copy' ? await plainCopy(job) : await convert(job);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  const result: WorkerResult = { seconds, peakRssBytes: peakRssBytes(), baselineRssBytes, cpuSeconds: (cpu.user + cpu.system) / 1e6, bytesWritten };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error) => {
  process.stderr.write(`error: ${(error as Error).message}\n`);
  process.exit(1);
});
