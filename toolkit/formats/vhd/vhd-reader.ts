/**
 * Reads fixed and dynamic VHDs (Virtual PC / Hyper-V "VHD" v1.0) into a block map, with the
 * sizes and contents qemu's vpc driver gives them, and refuses anything unsafe or unsupported.
 *
 * Layouts:
 *  - fixed:   [virtual disk bytes][footer]
 *  - dynamic: [footer copy][dynamic header]...[BAT]...[bitmap|block]...[footer]
 *
 * The per-block sector bitmap is deliberately ignored, as qemu does for non-differencing disks:
 * an allocated block is read in full. Producers set every bit of blocks they allocate, and for a
 * disk without a parent a clear bit only says "this sector reads as zeros", which the stored
 * bytes of a freshly allocated block already are.
 */
import { ImageFormatError } from '../../errors';
import type { RandomAccessSource } from '../../io/source';
import type { DiskImageReader, Extent, ImageInfo, ReaderOptions } from '../format';
import { coalesceExtents } from '../extent-coalescer';
import { rangesOverlap, type ByteRange } from './struct-layout';
import {
  VHD_BAT_UNALLOCATED,
  VHD_DYNAMIC_HEADER_COOKIE,
  VHD_DYNAMIC_HEADER_SIZE,
  decodeVhdDynamicHeader,
  dynamicHeaderChecksumValid,
  sectorBitmapSize,
} from './vhd-dynamic-header';
import {
  VHD_DISK_TYPE,
  VHD_FOOTER_COOKIE,
  VHD_FOOTER_SIZE,
  VHD_MAX_VIRTUAL_SIZE,
  creatorName,
  decodeVhdFooter,
  footerChecksumValid,
  vhdVirtualSize,
  type VhdFooter,
} from './vhd-footer';

/** A BAT larger than this (16 Mi entries, 64 MiB) is refused rather than loaded. */
export const VHD_MAX_BAT_ENTRIES = 1 << 24;

interface LocatedFooter { footer: VhdFooter; raw: Buffer; offset: number }

/** Finds the footer at EOF−512, or the 511-byte footer of old Virtual PC versions at EOF−511. */
async function readTrailingFooter(source: RandomAccessSource): Promise<LocatedFooter | null> {
  for (const length of [VHD_FOOTER_SIZE, VHD_FOOTER_SIZE - 1]) {
    if (source.size < length) continue;
    const offset = source.size - length;
    const bytes = await source.read(offset, length);
    if (bytes.toString('latin1', 0, 8) !== VHD_FOOTER_COOKIE) continue;
    const raw = Buffer.alloc(VHD_FOOTER_SIZE);
    bytes.copy(raw);
    return { footer: decodeVhdFooter(raw), raw, offset };
  }
  return null;
}

export async function sniffVhd(head: Buffer, source: RandomAccessSource): Promise<boolean> {
  if (head.length >= 8 && head.toString('latin1', 0, 8) === VHD_FOOTER_COOKIE) return true;
  return (await readTrailingFooter(source)) !== null;
}

export async function openVhd(source: RandomAccessSource, options: ReaderOptions): Promise<DiskImageReader> {
  const located = await readTrailingFooter(source);
  if (!located) {
    throw new ImageFormatError('vhd-footer-missing', `${source.name} has no VHD footer ('conectix') at its end`);
  }
  const { footer, raw } = located;
  if (!footerChecksumValid(raw)) {
    throw new ImageFormatError('vhd-footer-checksum', `${source.name}: the VHD footer checksum is wrong; the file is damaged`);
  }
  if (footer.diskType === VHD_DISK_TYPE.differencing) {
    throw new ImageFormatError('vhd-differencing', 'VHD differencing disks are not accepted; merge the chain first');
  }
  if (footer.diskType !== VHD_DISK_TYPE.fixed && footer.diskType !== VHD_DISK_TYPE.dynamic) {
    throw new ImageFormatError('vhd-disk-type', `VHD disk type ${footer.diskType} is not fixed (2) or dynamic (3)`);
  }
  const virtualSize = vhdVirtualSize(footer);
  if (virtualSize > VHD_MAX_VIRTUAL_SIZE) {
    throw new ImageFormatError('vhd-virtual-size-limit', `VHD declares ${virtualSize} bytes; a VHD can hold at most 2040 GiB`);
  }
  if (virtualSize > options.maxVirtualSize) {
    throw new ImageFormatError('vhd-virtual-size-limit', `VHD declares ${virtualSize} bytes, more than the allowed ${options.maxVirtualSize}`);
  }
  const details = {
    creator: creatorName(footer).replace(/\0/g, ''),
    currentSize: footer.currentSize,
    geometry: `${footer.cylinders}/${footer.heads}/${footer.sectorsPerTrack}`,
  };
  if (footer.diskType === VHD_DISK_TYPE.fixed) {
    // A fixed disk has no footer copy at 0. If its first sector looks like one anyway, qemu
    // would take the file for a dynamic disk described by that sector and show other contents
    // than we do: one file, two readings, so it is refused.
    if (located.offset >= VHD_FOOTER_SIZE && (await source.read(0, 8)).toString('latin1') === VHD_FOOTER_COOKIE) {
      throw new ImageFormatError('vhd-ambiguous-footer-copy', 'fixed VHD starts with a VHD footer of its own; qemu and Hyper-V would read it differently');
    }
    // The data area is everything before the footer; a declared size larger than that would make
    // a reader return the footer (or nothing) as disk content.
    if (virtualSize > located.offset) {
      throw new ImageFormatError('vhd-fixed-truncated', `fixed VHD declares ${virtualSize} bytes but holds only ${located.offset}; the file is truncated`);
    }
    const info: ImageInfo = { format: 'vhd', subformat: 'fixed', virtualSize, fileSize: source.size, allocatedSize: virtualSize, details };
    const extents: Extent[] = virtualSize > 0 ? [{ kind: 'data', start: 0, length: virtualSize, sourceOffset: 0 }] : [];
    return new VhdReader(info, () => extents);
  }
  return openDynamic(source, located, virtualSize, details);
}

async function openDynamic(
  source: RandomAccessSource,
  located: LocatedFooter,
  virtualSize: number,
  details: Record<string, string | number>,
): Promise<DiskImageReader> {
  const { footer } = located;
  const dataEnd = located.offset; // nothing but the footer may live past here

  // Dynamic disks carry a footer copy at offset 0 and qemu reads that one; both must agree.
  if (source.size < VHD_FOOTER_SIZE * 2) {
    throw new ImageFormatError('vhd-footer-copy', 'dynamic VHD is too short to hold its footer copy and headers');
  }
  const headRaw = await source.read(0, VHD_FOOTER_SIZE);
  const head = decodeVhdFooter(headRaw);
  if (head.cookie !== VHD_FOOTER_COOKIE || !footerChecksumValid(headRaw)) {
    throw new ImageFormatError('vhd-footer-copy', 'dynamic VHD has no valid footer copy at offset 0');
  }
  for (const field of ['diskType', 'currentSize', 'cylinders', 'heads', 'sectorsPerTrack', 'dataOffset'] as const) {
    if (head[field] !== footer[field]) {
      throw new ImageFormatError('vhd-footer-copy', `dynamic VHD footer copy disagrees with the footer (${field})`);
    }
  }
  if (creatorName(head) !== creatorName(footer)) {
    throw new ImageFormatError('vhd-footer-copy', 'dynamic VHD footer copy disagrees with the footer (creator)');
  }

  const headerRange: ByteRange = { start: footer.dataOffset, end: footer.dataOffset + VHD_DYNAMIC_HEADER_SIZE, what: 'dynamic header' };
  if (headerRange.start < VHD_FOOTER_SIZE || headerRange.end > dataEnd) {
    throw new ImageFormatError('vhd-dynamic-header-bounds', `dynamic VHD header offset ${footer.dataOffset} is outside the file`);
  }
  const headerRaw = await source.read(headerRange.start, VHD_DYNAMIC_HEADER_SIZE);
  const header = decodeVhdDynamicHeader(headerRaw);
  if (header.cookie !== VHD_DYNAMIC_HEADER_COOKIE) {
    throw new ImageFormatError('vhd-dynamic-header-cookie', `dynamic VHD header at ${footer.dataOffset} lacks its 'cxsparse' cookie`);
  }
  if (!dynamicHeaderChecksumValid(headerRaw)) {
    throw new ImageFormatError('vhd-dynamic-header-checksum', 'the dynamic VHD header checksum is wrong; the file is damaged');
  }
  const blockSize = header.blockSize;
  if (blockSize < 512 || (blockSize & (blockSize - 1)) !== 0) {
    throw new ImageFormatError('vhd-block-size', `VHD block size ${blockSize} is not a power of two of at least 512`);
  }
  const blocksNeeded = Math.ceil(virtualSize / blockSize);
  // Virtual PC sizes the BAT from current_size, which may exceed the CHS size qemu uses.
  const blocksDeclared = Math.ceil(Math.max(virtualSize, Math.min(footer.currentSize, VHD_MAX_VIRTUAL_SIZE)) / blockSize);
  const entries = header.maxTableEntries;
  if (entries < blocksNeeded) {
    throw new ImageFormatError('vhd-bat-too-small', `VHD BAT has ${entries} entries but the disk needs ${blocksNeeded}`);
  }
  if (entries > blocksDeclared || entries > VHD_MAX_BAT_ENTRIES) {
    throw new ImageFormatError('vhd-bat-too-large', `VHD BAT declares ${entries} entries, more than the disk size allows (${blocksDeclared})`);
  }
  const batRange: ByteRange = { start: header.tableOffset, end: header.tableOffset + entries * 4, what: 'BAT' };
  if (batRange.start < VHD_FOOTER_SIZE || batRange.end > dataEnd || rangesOverlap(batRange, headerRange)) {
    throw new ImageFormatError('vhd-bat-bounds', `VHD BAT at ${header.tableOffset} (${entries} entries) is outside the file or overlaps the header`);
  }
  const bat = await source.read(batRange.start, entries * 4);
  const bitmapSize = sectorBitmapSize(blockSize);
  const blockOffsets = checkBlockPlacement(bat, entries, bitmapSize, blockSize, dataEnd, [headerRange, batRange]);

  let allocated = 0;
  for (let i = 0; i < blocksNeeded; i++) {
    if (blockOffsets[i] !== VHD_BAT_UNALLOCATED) allocated += Math.min(blockSize, virtualSize - i * blockSize);
  }
  const info: ImageInfo = {
    format: 'vhd',
    subformat: 'dynamic',
    virtualSize,
    fileSize: source.size,
    allocatedSize: allocated,
    details: { ...details, blockSize },
  };
  // Extents are generated from the BAT on demand: a BAT of many small blocks would otherwise
  // become millions of extent objects held at once.
  return new VhdReader(info, function* dynamicExtents(): Iterable<Extent> {
    for (let i = 0; i < blocksNeeded; i++) {
      const start = i * blockSize;
      const length = Math.min(blockSize, virtualSize - start);
      const entry = blockOffsets[i];
      if (entry === VHD_BAT_UNALLOCATED) yield { kind: 'zero', start, length };
      else yield { kind: 'data', start, length, sourceOffset: entry * 512 + bitmapSize };
    }
  });
}

/**
 * Every allocated block (bitmap + data) must lie inside the file before the footer, clear of the
 * headers and the BAT, and clear of every other block: overlapping blocks would let one virtual
 * range silently alias another. Returns the decoded entries.
 */
function checkBlockPlacement(
  bat: Buffer,
  entries: number,
  bitmapSize: number,
  blockSize: number,
  dataEnd: number,
  metadata: ByteRange[],
): Uint32Array {
  const decoded = new Uint32Array(entries);
  const stride = bitmapSize + blockSize;
  for (let i = 0; i < entries; i++) {
    const entry = bat.readUInt32BE(i * 4);
    decoded[i] = entry;
    if (entry === VHD_BAT_UNALLOCATED) continue;
    const block: ByteRange = { start: entry * 512, end: entry * 512 + stride, what: `block ${i}` };
    if (block.start < VHD_FOOTER_SIZE || block.end > dataEnd) {
      throw new ImageFormatError('vhd-block-bounds', `VHD block ${i} at offset ${block.start} lies outside the file (the file is truncated or damaged)`);
    }
    for (const region of metadata) {
      if (rangesOverlap(block, region)) {
        throw new ImageFormatError('vhd-block-overlap', `VHD block ${i} at offset ${block.start} overlaps the ${region.what}`);
      }
    }
  }
  const sorted = decoded.filter((e) => e !== VHD_BAT_UNALLOCATED).sort();
  for (let i = 1; i < sorted.length; i++) {
    if ((sorted[i] - sorted[i - 1]) * 512 < stride) {
      throw new ImageFormatError('vhd-block-overlap', `two VHD blocks overlap at offset ${sorted[i] * 512}`);
    }
  }
  return decoded;
}

class VhdReader implements DiskImageReader {
  constructor(
    readonly info: ImageInfo,
    private readonly extents: () => Iterable<Extent>,
  ) {}

  blockMap(): AsyncIterable<Extent> {
    return coalesceExtents(this.extents());
  }

  async close(): Promise<void> {
    // The source belongs to the caller.
  }
}
