/**
 * The toolkit side of the `imaging` command: info, convert and check on local files or
 * s3://bucket/key objects. Each command prints its result and returns an exit code; a refused
 * or unreadable image prints `error: <message>` (no stack) and returns 1.
 *
 * S3 locations use IMAGING_S3_ENDPOINT (or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) with the AWS
 * SDK's usual credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles).
 */
import { S3Client } from '@aws-sdk/client-s3';
import { resolveCredentials } from './credentials';
import { S3_COMPATIBLE_CHECKSUMS } from '../toolkit/io/object-storage';
import { SingleBar } from 'cli-progress';
import { resolve as resolvePath } from 'path';
import { ConversionCancelledError } from '../toolkit/convert/cancellation';
import { convertOpenedImage, outputSizeBound } from '../toolkit/convert/convert-image';
import { ImageFormatError } from '../toolkit/errors';
import type { DiskImageReader, DiskImageWriter, ImageInfo } from '../toolkit/formats/format';
import { displayName, openImage, writerNames } from '../toolkit/formats/registry';
import { detectPartitionTable, PARTITION_HEAD_BYTES, type PartitionTable } from '../toolkit/inspect/partitions';
import { DiscardSink } from '../toolkit/io/discard-sink';
import { FileSink } from '../toolkit/io/file-sink';
import { FileSource } from '../toolkit/io/file-source';
import { S3MultipartSink } from '../toolkit/io/s3-multipart-sink';
import { S3ObjectSource } from '../toolkit/io/s3-object-source';
import { isS3Url, parseS3Url } from '../toolkit/io/s3-url';
import type { ByteSink } from '../toolkit/io/sink';
import type { RandomAccessSource } from '../toolkit/io/source';

/** Where commands print; tests pass their own. */
export interface CommandOutput {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const processOutput: CommandOutput = { stdout: process.stdout, stderr: process.stderr };

export async function infoCommand(path: string, options: { json?: boolean; out?: CommandOutput } = {}): Promise<number> {
  const out = options.out ?? processOutput;
  return reportingErrors(out, async (s3) => {
    const source = await openLocation(path, s3);
    try {
      const reader = await openImage(source);
      await reader.close();
      if (options.json) out.stdout.write(`${JSON.stringify({ name: source.name, ...reader.info }, null, 2)}\n`);
      else out.stdout.write(describeInfo(source.name, reader.info));
      return 0;
    } finally {
      await source.close();
    }
  });
}

export interface ConvertCommandOptions {
  /** Writer name; default: from the output's extension (.vmdk, .vhd, .ova), else raw. */
  outputFormat?: DiskImageWriter['name'];
  progress?: boolean;
  out?: CommandOutput;
}

export async function convertCommand(input: string, output: string, options: ConvertCommandOptions = {}): Promise<number> {
  const out = options.out ?? processOutput;
  return reportingErrors(out, async (s3) => {
    const outputFormat = options.outputFormat ?? outputFormatFromName(output);
    if (!writerNames.includes(outputFormat)) throw new UsageError(`unknown output format ${outputFormat} (one of ${writerNames.join(', ')})`);
    // Creating the output truncates it: converting a file onto itself would destroy the input.
    if (!isS3Url(input) && !isS3Url(output) && resolvePath(input) === resolvePath(output)) throw new UsageError('the output would overwrite the input');
    const source = await openLocation(input, s3);
    const started = Date.now();
    const bar = options.progress ? new SingleBar({ stream: out.stderr, format: 'converting [{bar}] {percentage}% | {doneMiB}/{totalMiB} MiB | {eta_formatted}', hideCursor: true, etaBuffer: 50 }) : undefined;
    // Ctrl-C aborts the upload or removes the partial file instead of leaving it behind.
    const controller = new AbortController();
    const onInterrupt = (): void => controller.abort();
    process.once('SIGINT', onInterrupt);
    let reader: DiskImageReader | undefined;
    try {
      // Opened before the output exists, so a refused image leaves nothing behind; its size sets the upload's part size.
      reader = await openImage(source);
      const sink = await createOutput(output, s3, outputSizeBound(reader.info.virtualSize));
      let barStarted = false;
      const result = await convertOpenedImage(reader, {
        source,
        sink,
        output: outputFormat,
        signal: controller.signal,
        onProgress: (done, total) => {
          if (!bar) return;
          if (!barStarted) {
            bar.start(total, 0, { doneMiB: 0, totalMiB: mib(total) });
            barStarted = true;
          }
          bar.update(done, { doneMiB: mib(done), totalMiB: mib(total) });
        },
      });
      bar?.stop();
      const seconds = (Date.now() - started) / 1000;
      out.stdout.write(
        `converted ${source.name} (${displayName(result.info.format, result.info.subformat)}, ${size(result.info.virtualSize)} virtual) ` +
          `to ${output} (${outputFormat.toUpperCase()}, ${size(result.bytesWritten)}) in ${seconds.toFixed(1)} s\n`,
      );
      return 0;
    } finally {
      bar?.stop();
      process.off('SIGINT', onInterrupt);
      await reader?.close();
      await source.close();
    }
  });
}

/**
 * Opens the image with every safety check and then reads all of it (every table, every
 * compressed unit) without writing anything; reports the partition table it finds.
 */
export async function checkCommand(path: string, options: { json?: boolean; out?: CommandOutput } = {}): Promise<number> {
  const out = options.out ?? processOutput;
  return reportingErrors(out, async (s3) => {
    const source = await openLocation(path, s3);
    try {
      const reader = await openImage(source);
      const sink = new DiscardSink(PARTITION_HEAD_BYTES);
      try {
        await convertOpenedImage(reader, { source, sink, output: 'raw' });
      } finally {
        await reader.close();
      }
      const table = detectPartitionTable(sink.head());
      if (options.json) out.stdout.write(`${JSON.stringify({ name: source.name, ok: true, ...reader.info, partitionTable: table }, null, 2)}\n`);
      else out.stdout.write(`${describeInfo(source.name, reader.info)}${describeTable(table)}ok: every check passed and all data was readable\n`);
      return 0;
    } finally {
      await source.close();
    }
  });
}

class UsageError extends Error {}

/** Runs a command body; errors become one `error:` line and exit code 1 (2 for usage). */
async function reportingErrors(out: CommandOutput, body: (s3: () => S3Client) => Promise<number>): Promise<number> {
  let client: S3Client | undefined;
  const s3 = (): S3Client => (client ??= s3ClientFromEnvironment());
  try {
    return await body(s3);
  } catch (error) {
    out.stderr.write(`error: ${messageOf(error)}\n`);
    return error instanceof UsageError ? 2 : 1;
  } finally {
    client?.destroy();
  }
}

function messageOf(error: unknown): string {
  if (error instanceof ImageFormatError) return `${error.message} [check: ${error.check}]`;
  if (error instanceof ConversionCancelledError) return 'interrupted; no output was left behind';
  const code = (error as { code?: string })?.code;
  if (code === 'ENOENT') return `no such file: ${(error as { path?: string }).path}`;
  const name = (error as { name?: string })?.name;
  if (name === 'NotFound' || name === 'NoSuchKey' || name === 'NoSuchBucket') return `S3 object not found (${name})`;
  return error instanceof Error ? error.message : String(error);
}

export function s3ClientFromEnvironment(env: NodeJS.ProcessEnv = process.env): S3Client {
  const endpoint = env.IMAGING_S3_ENDPOINT || env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL;
  return new S3Client({
    region: env.IMAGING_S3_REGION || env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    // Self-hosted endpoints (the embedded one included) want path-style addressing.
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    // The AWS chain first, then the credentials `imaging serve` keeps in its data directory.
    credentials: () => resolveCredentials({ dataDir: env.IMAGING_DATA_DIR }),
    ...S3_COMPATIBLE_CHECKSUMS,
  });
}

async function openLocation(location: string, s3: () => S3Client): Promise<RandomAccessSource> {
  if (!isS3Url(location)) return FileSource.open(location);
  const { bucket, key } = parseS3Url(location);
  return S3ObjectSource.open(s3(), bucket, key);
}

/** `expectedSize` bounds the output's bytes: an upload picks parts large enough for S3's 10,000-part limit. */
async function createOutput(location: string, s3: () => S3Client, expectedSize: number): Promise<ByteSink> {
  if (!isS3Url(location)) return FileSink.create(location);
  const { bucket, key } = parseS3Url(location);
  return new S3MultipartSink(s3(), bucket, key, { expectedSize });
}

function outputFormatFromName(name: string): DiskImageWriter['name'] {
  const extension = /\.([a-z0-9]+)$/i.exec(name)?.[1]?.toLowerCase();
  if (extension === 'vmdk' || extension === 'ova') return extension;
  if (extension === 'vhd' || extension === 'vpc') return 'vhd';
  return 'raw';
}

function describeInfo(name: string, info: ImageInfo): string {
  const rows: [string, unknown][] = [
    ['image', name],
    ['format', displayName(info.format, info.subformat)],
    ['virtual size', size(info.virtualSize)],
    ['file size', size(info.fileSize)],
  ];
  if (info.allocatedSize !== undefined) rows.push(['allocated', size(info.allocatedSize)]);
  rows.push(...Object.entries(info.details ?? {}));
  const width = Math.max(...rows.map(([key]) => key.length)) + 2;
  return rows.map(([key, value]) => `${`${key}:`.padEnd(width)}${value}\n`).join('');
}

function describeTable(table: PartitionTable): string {
  const lines = [`partitions:   ${table.type === 'none' ? 'no partition table' : table.type.toUpperCase()}`];
  for (const p of table.partitions) {
    lines.push(`  ${p.index}: start ${p.start}, ${size(p.size)}, type ${p.type}${p.bootable ? ', bootable' : ''}${p.name ? `, "${p.name}"` : ''}`);
  }
  for (const warning of table.warnings ?? []) lines.push(`  warning: ${warning}`);
  return `${lines.join('\n')}\n`;
}

function size(bytes: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 'bytes';
  for (const next of units) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  return unit === 'bytes' ? `${bytes} bytes` : `${value.toFixed(1)} ${unit} (${bytes} bytes)`;
}

function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(0);
}
