/**
 * Which format an image really is, and the one place that maps format names to modules.
 *
 * Every format is asked about the same head bytes. Two answers are refused: a file that is two
 * formats at once is how one header gets hidden inside another. No answer means RAW.
 */
import { ImageFormatError } from '../errors';
import type { RandomAccessSource } from '../io/source';
import type { DiskFormat, DiskImageReader, DiskImageWriter, FormatName, ImageInfo } from './format';
import { DEFAULT_MAX_VIRTUAL_SIZE } from './format';
import { ovaFormat, ovaWriter } from './ova';
import { qcow2Format } from './qcow2';
import { rawFormat, rawWriter } from './raw';
import { vhdDynamicWriter, vhdFixedWriter, vhdFormat } from './vhd';
import { vhdxFormat } from './vhdx';
import { vmdkFormat, vmdkStreamOptimizedWriter } from './vmdk';

/** Formats with a recognisable header. RAW is not among them: it is the fallback. */
const headedFormats: DiskFormat[] = [qcow2Format, vmdkFormat, vhdxFormat, vhdFormat, ovaFormat];

const readers: Record<FormatName, DiskFormat> = {
  raw: rawFormat,
  qcow2: qcow2Format,
  vmdk: vmdkFormat,
  vhd: vhdFormat,
  vhdx: vhdxFormat,
  ova: ovaFormat,
};

const writers: Record<DiskImageWriter['name'], DiskImageWriter> = {
  raw: rawWriter,
  vmdk: vmdkStreamOptimizedWriter,
  vhd: vhdDynamicWriter,
  'vhd-fixed': vhdFixedWriter,
  ova: ovaWriter,
};

/** Bytes read once from the start of the image and shown to every sniffer. */
export const SNIFF_HEAD_BYTES = 64 * 1024;

export function formatByName(name: FormatName): DiskFormat {
  const format = readers[name];
  if (!format) throw new Error(`unknown disk format ${name}`);
  return format;
}

export function writerFor(name: DiskImageWriter['name']): DiskImageWriter {
  const writer = writers[name];
  if (!writer) throw new Error(`no writer for output format ${name}`);
  return writer;
}

export const writerNames = Object.keys(writers) as DiskImageWriter['name'][];

/** How users write format names in messages: "VMDK", "QCOW2", "RAW". */
export function displayName(format: FormatName, subformat?: string): string {
  return subformat ? `${format.toUpperCase()} (${subformat})` : format.toUpperCase();
}

export async function sniffFormat(source: RandomAccessSource): Promise<FormatName> {
  const head = await source.read(0, Math.min(SNIFF_HEAD_BYTES, source.size));
  const matches: FormatName[] = [];
  for (const format of headedFormats) {
    if (await format.sniff(head, source)) matches.push(format.name);
  }
  if (matches.length > 1) {
    throw new ImageFormatError(
      'format-ambiguous',
      `${source.name} looks like ${matches.map((name) => displayName(name)).join(' and ')} at the same time; ` +
        'an image that carries two formats\' headers is refused (one header may be hiding in another)',
    );
  }
  return matches[0] ?? 'raw';
}

export interface OpenImageOptions {
  /** The format the user declared; refused when the bytes say otherwise. */
  claimedFormat?: FormatName;
  maxVirtualSize?: number;
}

/** Sniffs, checks the claim, and opens the image with its format's reader. */
export async function openImage(source: RandomAccessSource, options: OpenImageOptions = {}): Promise<DiskImageReader> {
  const maxVirtualSize = options.maxVirtualSize ?? DEFAULT_MAX_VIRTUAL_SIZE;
  const sniffed = await sniffFormat(source);
  const claimed = options.claimedFormat;
  if (claimed && claimed !== sniffed) throw mismatch(claimed, await describeQuietly(source, sniffed, maxVirtualSize));
  return formatByName(sniffed).open(source, { maxVirtualSize });
}

/** For the mismatch message only: the subformat when the sniffed format opens, else just the format. */
async function describeQuietly(source: RandomAccessSource, format: FormatName, maxVirtualSize: number): Promise<Pick<ImageInfo, 'format' | 'subformat'>> {
  try {
    const reader = await formatByName(format).open(source, { maxVirtualSize });
    await reader.close();
    return reader.info;
  } catch {
    return { format };
  }
}

function mismatch(claimed: FormatName, actual: Pick<ImageInfo, 'format' | 'subformat'>): ImageFormatError {
  const what =
    actual.format === 'raw'
      ? `has no ${displayName(claimed)} header (it would be read as a RAW disk)`
      : `is a ${displayName(actual.format, actual.subformat)} file`;
  return new ImageFormatError(
    'format-mismatch',
    `the image was declared ${displayName(claimed)} but ${what}; declare the format it really has`,
  );
}
