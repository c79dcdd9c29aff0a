/**
 * Which format an image really is, and the one place that maps format names to modules (loaded
 * when first needed, so that a command starts without every reader and writer).
 *
 * Every format is asked about the same head bytes. Two answers are refused: a file that is two
 * formats at once is how one header gets hidden inside another. No answer means RAW.
 */
import { ImageFormatError } from '../errors';
import type { RandomAccessSource } from '../io/source';
import type { DiskFormat, DiskImageReader, DiskImageWriter, FormatName, ImageInfo } from './format';
import { DEFAULT_MAX_VIRTUAL_SIZE } from './format';
import { looksLikeOva } from './ova/sniff';
import { sniffQcow2 } from './qcow2/sniff';
import { sniffVhd } from './vhd/sniff';
import { sniffVhdx } from './vhdx/sniff';
import { looksLikeVmdk } from './vmdk/sniff';

type Sniffer = (head: Buffer, source: RandomAccessSource) => Promise<boolean> | boolean;

/**
 * Formats with a recognisable header, each told by a sniffer that loads none of the format's
 * reader: a command that only looks at one image loads one reader. RAW is not among them: it is
 * the fallback.
 */
const headedFormats: Array<[FormatName, Sniffer]> = [
  ['qcow2', sniffQcow2],
  ['vmdk', looksLikeVmdk],
  ['vhdx', sniffVhdx],
  ['vhd', sniffVhd],
  ['ova', looksLikeOva],
];

/** Each format's module, loaded when an image of that format is opened. */
const formatModules: Record<FormatName, () => Promise<DiskFormat>> = {
  raw: async () => (await import('./raw')).rawFormat,
  qcow2: async () => (await import('./qcow2')).qcow2Format,
  vmdk: async () => (await import('./vmdk')).vmdkFormat,
  vhd: async () => (await import('./vhd')).vhdFormat,
  vhdx: async () => (await import('./vhdx')).vhdxFormat,
  ova: async () => (await import('./ova')).ovaFormat,
};

/** Each output format's writer, loaded when a conversion writes that format. */
const writerModules: Record<DiskImageWriter['name'], () => Promise<DiskImageWriter>> = {
  raw: async () => (await import('./raw')).rawWriter,
  vmdk: async () => (await import('./vmdk')).vmdkStreamOptimizedWriter,
  vhd: async () => (await import('./vhd')).vhdDynamicWriter,
  'vhd-fixed': async () => (await import('./vhd')).vhdFixedWriter,
  ova: async () => (await import('./ova')).ovaWriter,
};

/** Bytes read once from the start of the image and shown to every sniffer. */
export const SNIFF_HEAD_BYTES = 64 * 1024;

export async function loadFormat(name: FormatName): Promise<DiskFormat> {
  const load = formatModules[name];
  if (!load) throw new Error(`unknown disk format ${name}`);
  return load();
}

export const writerNames = Object.keys(writerModules) as DiskImageWriter['name'][];

export function isWriterName(name: string): name is DiskImageWriter['name'] {
  return Object.prototype.hasOwnProperty.call(writerModules, name);
}

export async function loadWriter(name: DiskImageWriter['name']): Promise<DiskImageWriter> {
  if (!isWriterName(name)) throw new Error(`no writer for output format ${name}`);
  return writerModules[name]();
}

/** How users write format names in messages: "VMDK", "QCOW2", "RAW". */
export function displayName(format: FormatName, subformat?: string): string {
  return subformat ? `${format.toUpperCase()} (${subformat})` : format.toUpperCase();
}

export async function sniffFormat(source: RandomAccessSource): Promise<FormatName> {
  const head = await source.read(0, Math.min(SNIFF_HEAD_BYTES, source.size));
  const matches: FormatName[] = [];
  for (const [name, sniff] of headedFormats) {
    if (await sniff(head, source)) matches.push(name);
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
  return (await loadFormat(sniffed)).open(source, { maxVirtualSize });
}

/** For the mismatch message only: the subformat when the sniffed format opens, else just the format. */
async function describeQuietly(source: RandomAccessSource, format: FormatName, maxVirtualSize: number): Promise<Pick<ImageInfo, 'format' | 'subformat'>> {
  try {
    const reader = await (await loadFormat(format)).open(source, { maxVirtualSize });
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
