/**
 * One conversion by our toolkit, alone in its own process so its peak memory can be measured:
 *   node dist/bench/convert-worker.js '<json job>'
 * Prints one JSON line: { seconds, peakRssBytes, bytesWritten }.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { readFileSync } from 'fs';
import { convertImage } from '../toolkit/convert/convert-image';
import type { DiskImageWriter } from '../toolkit/formats/format';
import { FileSink } from '../toolkit/io/file-sink';
import { FileSource } from '../toolkit/io/file-source';
import { makeS3Client } from '../toolkit/io/object-storage';
import { S3MultipartSink } from '../toolkit/io/s3-multipart-sink';
import { S3ObjectSource } from '../toolkit/io/s3-object-source';
import { isS3Url, parseS3Url } from '../toolkit/io/s3-url';

export interface ConvertJob {
  input: string;
  output: string;
  outputFormat: DiskImageWriter['name'];
  s3Endpoint?: string;
}

/** Peak resident set size of this process, from the kernel's high-water mark. */
export function peakRssBytes(): number {
  const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return match ? Number(match[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as ConvertJob;
  const s3 = job.s3Endpoint
    ? makeS3Client({ endpoint: job.s3Endpoint, region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', forcePathStyle: true })
    : undefined;
  const started = process.hrtime.bigint();
  const source = isS3Url(job.input) ? await S3ObjectSource.open(s3!, parseS3Url(job.input).bucket, parseS3Url(job.input).key) : await FileSource.open(job.input);
  const sink = isS3Url(job.output)
    ? new S3MultipartSink(s3!, parseS3Url(job.output).bucket, parseS3Url(job.output).key, { partSize: 16 * 1024 * 1024, queueSize: 4 })
    : // Not durable: qemu-img convert, the baseline, does not fsync its output either.
      await FileSink.create(job.output, undefined, { durable: process.env.BENCH_DURABLE === '1' });
  const result = await convertImage({ source, sink, output: job.outputFormat });
  await source.close();
  s3?.destroy();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  process.stdout.write(`${JSON.stringify({ seconds, peakRssBytes: peakRssBytes(), bytesWritten: result.bytesWritten })}\n`);
}

main().catch((error) => {
  process.stderr.write(`error: ${(error as Error).message}\n`);
  process.exit(1);
});
