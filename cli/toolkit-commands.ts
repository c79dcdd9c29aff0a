/**
 * The toolkit side of the `imaging` command: info, convert and check on local files or
 * s3://bucket/key objects. Each command prints its result and returns an exit code; a refused
 * or unreadable image prints `error: <message>` (no stack) and returns 1.
 *
 * S3 locations use IMAGING_S3_ENDPOINT (or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) with the AWS
 * SDK's usual credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles).
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { extname, resolve as resolvePath } from 'path';
import { ImageFormatError } from '../toolkit/errors';
import type { DiskImageReader, DiskImageWriter, FormatName, ImageInfo } from '../toolkit/formats/format';
import { displayName, openImage, writerNames } from '../toolkit/formats/registry';
import type { PartitionTable } from '../toolkit/inspect/partitions';
import { FileSource } from '../toolkit/io/file-source';
import { isS3Url, parseS3Url } from '../toolkit/io/s3-url';
import type { ByteSink } from '../toolkit/io/sink';
import type { RandomAccessSource } from '../toolkit/io/source';

// Loaded here: what `info` needs (the format readers, a file source). Loaded when used: the AWS
// SDK (only for s3:// locations), the conversion engine (convert, check), the progress bar.

/** Where commands print; tests pass their own. */
export interface CommandOutput {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const processOutput: CommandOutput = { stdout: process.stdout, stderr: process.stderr };

/** What a toolkit command is told about its input. */
export interface InputOptions {
  /**
   * The format the input is declared to be (qemu-img's -f: raw, qcow2, vmdk, vhd or vpc, vhdx,
   * ova). Refused when the bytes are another format, as the service refuses an import whose
   * declared format is not what it uploaded. Without it, a name ending in a format's extension
   * declares that format.
   */
  format?: string;
}

export async function infoCommand(path: string, options: InputOptions & { json?: boolean; out?: CommandOutput } = {}): Promise<number> {
  const out = options.out ?? processOutput;
  return reportingErrors(out, async (s3) => {
    const claim = declaredFormat(path, options.format);
    const source = await openLocation(path, s3);
    try {
      const reader = await openClaimed(source, claim);
      await reader.close();
      if (options.json) out.stdout.write(`${JSON.stringify({ name: source.name, ...reader.info }, null, 2)}\n`);
      else out.stdout.write(describeInfo(source.name, reader.info));
      return 0;
    } finally {
      await source.close();
    }
  });
}

export interface ConvertCommandOptions extends InputOptions {
  /** Writer name; default: from the output's extension (.vmdk, .vhd, .ova), else raw. */
  outputFormat?: DiskImageWriter['name'];
  progress?: boolean;
  out?: CommandOutput;
}

export async function convertCommand(input: string, output: string, options: ConvertCommandOptions = {}): Promise<number> {
  const out = options.out ?? processOutput;
  return reportingErrors(out, async (s3) => {
    const { convertOpenedImage, outputSizeBound } = await import('../toolkit/convert/convert-image');
    const outputFormat = options.outputFormat ?? outputFormatFromName(output);
    if (!writerNames.includes(outputFormat)) throw new UsageError(`unknown output format ${outputFormat} (one of ${writerNames.join(', ')})`);
    const claim = declaredFormat(input, options.format);
    // Creating the output truncates it: converting a file onto itself would destroy the input.
    if (!isS3Url(input) && !isS3Url(output) && resolvePath(input) === resolvePath(output)) throw new UsageError('the output would overwrite the input');
    const source = await openLocation(input, s3);
    const started = Date.now();
    const bar = options.progress ? new (await import('cli-progress')).SingleBar({ stream: out.stderr, format: 'converting [{bar}] {percentage}% | {doneMiB}/{totalMiB} MiB | {eta_formatted}', hideCursor: true, etaBuffer: 50 }) : undefined;
    // Ctrl-C aborts the upload or removes the partial file instead of leaving it behind.
    const controller = new AbortController();
    const onInterrupt = (): void => controller.abort();
    process.once('SIGINT', onInterrupt);
    let reader: DiskImageReader | undefined;
    try {
      // Opened before the output exists, so a refused image leaves nothing behind; its size sets the upload's part size.
      reader = await openClaimed(source, claim);
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
export async function checkCommand(path: string, options: InputOptions & { json?: boolean; out?: CommandOutput } = {}): Promise<number> {
  const out = options.out ?? processOutput;
  return reportingErrors(out, async (s3) => {
    const { convertOpenedImage } = await import('../toolkit/convert/convert-image');
    const { DiscardSink } = await import('../toolkit/io/discard-sink');
    const { detectPartitionTable, PARTITION_HEAD_BYTES } = await import('../toolkit/inspect/partitions');
    const claim = declaredFormat(path, options.format);
    const source = await openLocation(path, s3);
    try {
      const reader = await openClaimed(source, claim);
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

/** -f's values, qemu-img's names included (vpc is qemu-img's name for VHD). */
const FORMAT_NAMES: Record<string, FormatName> = { raw: 'raw', qcow2: 'qcow2', vmdk: 'vmdk', vhd: 'vhd', vpc: 'vhd', vhdx: 'vhdx', ova: 'ova' };

/** Extensions that name one format. Not .img or .bin: tools write raw and qcow2 disks under both. */
const EXTENSION_FORMATS: Record<string, FormatName> = { '.raw': 'raw', '.qcow2': 'qcow2', '.vmdk': 'vmdk', '.vhd': 'vhd', '.vpc': 'vhd', '.vhdx': 'vhdx', '.ova': 'ova' };

/** The format an input is declared to be, and by what: -f, else its name's extension, else nothing. */
interface FormatClaim {
  format: FormatName;
  by: 'flag' | 'extension';
  extension?: string;
}

function declaredFormat(location: string, flag: string | undefined): FormatClaim | undefined {
  if (flag !== undefined) {
    const format = FORMAT_NAMES[flag.toLowerCase()];
    if (!format) throw new UsageError(`unknown format ${flag} (one of ${Object.keys(FORMAT_NAMES).join(', ')})`);
    return { format, by: 'flag' };
  }
  const extension = extname(isS3Url(location) ? parseS3Url(location).key : location).toLowerCase();
  const format = EXTENSION_FORMATS[extension];
  return format ? { format, by: 'extension', extension } : undefined;
}

/** openImage with the claim checked by the toolkit's own format-mismatch check, the one the service runs. */
async function openClaimed(source: RandomAccessSource, claim: FormatClaim | undefined): Promise<DiskImageReader> {
  try {
    return await openImage(source, { claimedFormat: claim?.format });
  } catch (error) {
    if (claim?.by === 'extension' && error instanceof ImageFormatError && error.check === 'format-mismatch') {
      throw new ExtensionClaimError(error, claim.extension ?? '');
    }
    throw error;
  }
}

/** A format-mismatch refusal where the name's extension made the claim: the same message, and a hint. */
class ExtensionClaimError extends Error {
  constructor(
    readonly refusal: ImageFormatError,
    readonly extension: string,
  ) {
    super(refusal.message);
  }
}

/** Runs a command body; errors become one `error:` line and exit code 1 (2 for usage). */
async function reportingErrors(out: CommandOutput, body: (s3: () => Promise<S3Client>) => Promise<number>): Promise<number> {
  let client: S3Client | undefined;
  const s3 = async (): Promise<S3Client> => (client ??= await s3ClientFromEnvironment());
  try {
    return await body(s3);
  } catch (error) {
    out.stderr.write(`error: ${messageOf(error)}\n`);
    if (error instanceof ExtensionClaimError) {
      out.stderr.write(`(the name's extension ${error.extension} declared the format; rename the file, or give -f with the format it really has)\n`);
    }
    return error instanceof UsageError ? 2 : 1;
  } finally {
    client?.destroy();
  }
}

function messageOf(error: unknown): string {
  if (error instanceof ExtensionClaimError) return messageOf(error.refusal);
  if (error instanceof ImageFormatError) return `${error.message} [check: ${error.check}]`;
  // ConversionCancelledError, by name: the conversion engine is loaded only by the commands that convert.
  if ((error as { name?: unknown } | null)?.name === 'ConversionCancelledError') return 'interrupted; no output was left behind';
  const code = (error as { code?: string })?.code;
  if (code === 'ENOENT') return `no such file: ${(error as { path?: string }).path}`;
  const name = (error as { name?: string })?.name;
  if (name === 'NotFound' || name === 'NoSuchKey' || name === 'NoSuchBucket') return `S3 object not found (${name})`;
  return error instanceof Error ? error.message : String(error);
}

export async function s3ClientFromEnvironment(env: NodeJS.ProcessEnv = process.env): Promise<S3Client> {
  const { S3Client } = await import('@aws-sdk/client-s3');
  const { S3_COMPATIBLE_CHECKSUMS } = await import('../toolkit/io/object-storage');
  const { resolveCredentials } = await import('./credentials');
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

async function openLocation(location: string, s3: () => Promise<S3Client>): Promise<RandomAccessSource> {
  if (!isS3Url(location)) return FileSource.open(location);
  const { S3ObjectSource } = await import('../toolkit/io/s3-object-source');
  const { bucket, key } = parseS3Url(location);
  return S3ObjectSource.open(await s3(), bucket, key);
}

/** `expectedSize` bounds the output's bytes: an upload picks parts large enough for S3's 10,000-part limit. */
async function createOutput(location: string, s3: () => Promise<S3Client>, expectedSize: number): Promise<ByteSink> {
  if (!isS3Url(location)) {
    const { FileSink } = await import('../toolkit/io/file-sink');
    return FileSink.create(location);
  }
  const { S3MultipartSink } = await import('../toolkit/io/s3-multipart-sink');
  const { bucket, key } = parseS3Url(location);
  return new S3MultipartSink(await s3(), bucket, key, { expectedSize });
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
