/**
 * One benchmark job alone in its own process, so its peak memory and CPU time are its own:
 *   node dist/bench/convert-worker.js '<json job>'
 * A job is a conversion by our toolkit (ConvertJob), or the reference an S3 → S3 conversion is
 * held against (PlainCopyJob). Prints one JSON line: WorkerResult.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
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
}

/**
 * The same bytes moved through the same server with no conversion: the input object read by
 * `getStreams` ranged GETs at once (through S3ObjectSource, the reader our converter uses) while a local file of the output's size is uploaded by
 * multipart upload, each part streamed from the file. What the transport alone costs.
 */
export interface PlainCopyJob extends UploadTuning {
  kind: 'plain-copy';
  input: string;
  output: string;
  uploadFile: string;
  s3Endpoint: string;
  getStreams: number;
}

export interface WorkerResult {
  seconds: number;
  peakRssBytes: number;
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
  const result = await convertOpenedImage(reader, { source, sink, output: job.outputFormat, readConcurrency: job.readConcurrency });
  await reader.close();
  await source.close();
  s3?.destroy();
  return result.bytesWritten;
}

async function plainCopy(job: PlainCopyJob): Promise<number> {
  const s3 = s3ClientFor(job.s3Endpoint);
  try {
    const [, written] = await Promise.all([
      readInRanges(s3, parseS3Url(job.input), job.getStreams),
      uploadFileByParts(s3, parseS3Url(job.output), job.uploadFile, job.partSize ?? 16 * MiB, job.queueSize ?? 4),
    ]);
    return written;
  } finally {
    s3.destroy();
  }
}

/**
 * Reads the whole object as `streams` contiguous ranges at once, 4 MiB at a time, through the
 * same reader our converter uses (S3ObjectSource), and discards the bytes.
 */
async function readInRanges(s3: S3Client, { bucket, key }: S3Location, streams: number): Promise<number> {
  const source = await S3ObjectSource.open(s3, bucket, key);
  const step = Math.ceil(source.size / streams);
  const ranges = Array.from({ length: streams }, (_, i) => [i * step, Math.min(source.size, (i + 1) * step)]).filter(([start, end]) => end > start);
  const counts = await Promise.all(
    ranges.map(async ([start, end]) => {
      const buffer = Buffer.allocUnsafe(4 * MiB);
      for (let at = start; at < end; at += buffer.length) await source.readInto(at, buffer.subarray(0, Math.min(buffer.length, end - at)));
      return end - start;
    }),
  );
  return counts.reduce((sum, n) => sum + n, 0);
}

/** Multipart upload of a local file, `queueSize` parts at once, each streamed from the file (no part buffers). */
async function uploadFileByParts(s3: S3Client, { bucket, key }: S3Location, path: string, partSize: number, queueSize: number): Promise<number> {
  const size = statSync(path).size;
  const body = (start: number, end: number) => createReadStream(path, { start, end: end - 1, highWaterMark: MiB });
  if (size <= partSize) {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: size ? body(0, size) : Buffer.alloc(0), ContentLength: size }));
    return size;
  }
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  const partCount = Math.ceil(size / partSize);
  const parts: CompletedPart[] = [];
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < partCount) {
      const index = next++;
      const start = index * partSize;
      const end = Math.min(size, start + partSize);
      const response = await s3.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: index + 1, Body: body(start, end), ContentLength: end - start }));
      parts[index] = { PartNumber: index + 1, ETag: response.ETag };
    }
  };
  await Promise.all(Array.from({ length: queueSize }, lane));
  await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
  return size;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as ConvertJob | PlainCopyJob;
  const started = process.hrtime.bigint();
  const cpuBefore = process.cpuUsage();
  const bytesWritten = job.kind === 'plain-copy' ? await plainCopy(job) : await convert(job);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  const result: WorkerResult = { seconds, peakRssBytes: peakRssBytes(), cpuSeconds: (cpu.user + cpu.system) / 1e6, bytesWritten };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error) => {
  process.stderr.write(`error: ${(error as Error).message}\n`);
  process.exit(1);
});
