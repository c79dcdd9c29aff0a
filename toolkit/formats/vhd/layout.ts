/**
 * From a VHD's footer to its layout: the footer, its copy, the dynamic header and the BAT, each
 * checked (checks.ts names every rule) before the next is read. Sizes and contents follow qemu's
 * vpc driver. Spec: Microsoft "Virtual Hard Disk Image Format Specification" v1.0
 * (https://www.microsoft.com/en-us/download/details.aspx?id=23850).
 *
 * Layouts:
 *  - fixed:   [virtual disk bytes][footer]
 *  - dynamic: [footer copy][dynamic header]...[BAT]...[bitmap|block]...[footer]
 */
import type { RandomAccessSource } from '../../io/source';
import type { ReaderOptions } from '../format';
import { refusal } from '../safety-checks';
import { rangesOverlap, type ByteRange } from '../struct-layout';
import { checkBlockPlacement } from './block-table';
import { readTrailingFooter, type LocatedFooter } from './sniff';
import { vhdChecks } from './checks';
import {
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
} from './vhd-footer';

/** A BAT larger than this (16 Mi entries, 64 MiB) is refused rather than loaded. */
export const VHD_MAX_BAT_ENTRIES = 1 << 24;

export type VhdLayout =
  | { kind: 'fixed'; virtualSize: number; details: Record<string, string | number> }
  | {
      kind: 'dynamic';
      virtualSize: number;
      details: Record<string, string | number>;
      blockSize: number;
      /** Bytes of the sector bitmap in front of each block's data. */
      bitmapSize: number;
      /** Blocks that map the virtual disk (the BAT may hold more). */
      blocksNeeded: number;
      /** BAT entries (sector offsets of the blocks, or VHD_BAT_UNALLOCATED), all checked. */
      blockOffsets: Uint32Array;
    };

/** Reads and checks everything a VHD's block map is computed from. */
export async function readVhdLayout(source: RandomAccessSource, options: ReaderOptions): Promise<VhdLayout> {
  const located = await readTrailingFooter(source);
  if (!located) {
    throw refusal(vhdChecks.footerMissing, `${source.name} has no VHD footer ('conectix') at its end`);
  }
  const { footer, raw } = located;
  if (!footerChecksumValid(raw)) {
    throw refusal(vhdChecks.footerChecksum, `${source.name}: the VHD footer checksum is wrong; the file is damaged`);
  }
  if (footer.diskType === VHD_DISK_TYPE.differencing) {
    throw refusal(vhdChecks.differencing, 'VHD differencing disks are not accepted; merge the chain first');
  }
  if (footer.diskType !== VHD_DISK_TYPE.fixed && footer.diskType !== VHD_DISK_TYPE.dynamic) {
    throw refusal(vhdChecks.diskType, `VHD disk type ${footer.diskType} is not fixed (2) or dynamic (3)`);
  }
  const virtualSize = vhdVirtualSize(footer);
  if (virtualSize > VHD_MAX_VIRTUAL_SIZE) {
    throw refusal(vhdChecks.virtualSizeLimit, `VHD declares ${virtualSize} bytes; a VHD can hold at most 2040 GiB`);
  }
  if (virtualSize > options.maxVirtualSize) {
    throw refusal(vhdChecks.virtualSizeLimit, `VHD declares ${virtualSize} bytes, more than the allowed ${options.maxVirtualSize}`);
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
      throw refusal(vhdChecks.ambiguousFooterCopy, 'fixed VHD starts with a VHD footer of its own; qemu and Hyper-V would read it differently');
    }
    // The data area is everything before the footer; a declared size larger than that would make
    // a reader return the footer (or nothing) as disk content.
    if (virtualSize > located.offset) {
      throw refusal(vhdChecks.fixedTruncated, `fixed VHD declares ${virtualSize} bytes but holds only ${located.offset}; the file is truncated`);
    }
    return { kind: 'fixed', virtualSize, details };
  }
  return readDynamicLayout(source, located, virtualSize, details);
}

async function readDynamicLayout(
  source: RandomAccessSource,
  located: LocatedFooter,
  virtualSize: number,
  details: Record<string, string | number>,
): Promise<VhdLayout> {
  const { footer } = located;
  const dataEnd = located.offset; // nothing but the footer may live past here

  // Dynamic disks carry a footer copy at offset 0 and qemu reads that one; both must agree.
  if (source.size < VHD_FOOTER_SIZE * 2) {
    throw refusal(vhdChecks.footerCopy, 'dynamic VHD is too short to hold its footer copy and headers');
  }
  const headRaw = await source.read(0, VHD_FOOTER_SIZE);
  const head = decodeVhdFooter(headRaw);
  if (head.cookie !== VHD_FOOTER_COOKIE || !footerChecksumValid(headRaw)) {
    throw refusal(vhdChecks.footerCopy, 'dynamic VHD has no valid footer copy at offset 0');
  }
  for (const field of ['diskType', 'currentSize', 'cylinders', 'heads', 'sectorsPerTrack', 'dataOffset'] as const) {
    if (head[field] !== footer[field]) {
      throw refusal(vhdChecks.footerCopy, `dynamic VHD footer copy disagrees with the footer (${field})`);
    }
  }
  if (creatorName(head) !== creatorName(footer)) {
    throw refusal(vhdChecks.footerCopy, 'dynamic VHD footer copy disagrees with the footer (creator)');
  }

  const headerRange: ByteRange = { start: footer.dataOffset, end: footer.dataOffset + VHD_DYNAMIC_HEADER_SIZE, what: 'dynamic header' };
  if (headerRange.start < VHD_FOOTER_SIZE || headerRange.end > dataEnd) {
    throw refusal(vhdChecks.dynamicHeaderBounds, `dynamic VHD header offset ${footer.dataOffset} is outside the file`);
  }
  const headerRaw = await source.read(headerRange.start, VHD_DYNAMIC_HEADER_SIZE);
  const header = decodeVhdDynamicHeader(headerRaw);
  if (header.cookie !== VHD_DYNAMIC_HEADER_COOKIE) {
    throw refusal(vhdChecks.dynamicHeaderCookie, `dynamic VHD header at ${footer.dataOffset} lacks its 'cxsparse' cookie`);
  }
  if (!dynamicHeaderChecksumValid(headerRaw)) {
    throw refusal(vhdChecks.dynamicHeaderChecksum, 'the dynamic VHD header checksum is wrong; the file is damaged');
  }
  const blockSize = header.blockSize;
  if (blockSize < 512 || (blockSize & (blockSize - 1)) !== 0) {
    throw refusal(vhdChecks.blockSize, `VHD block size ${blockSize} is not a power of two of at least 512`);
  }
  const blocksNeeded = Math.ceil(virtualSize / blockSize);
  // Virtual PC sizes the BAT from current_size, which may exceed the CHS size qemu uses.
  const blocksDeclared = Math.ceil(Math.max(virtualSize, Math.min(footer.currentSize, VHD_MAX_VIRTUAL_SIZE)) / blockSize);
  const entries = header.maxTableEntries;
  if (entries < blocksNeeded) {
    throw refusal(vhdChecks.batTooSmall, `VHD BAT has ${entries} entries but the disk needs ${blocksNeeded}`);
  }
  if (entries > blocksDeclared || entries > VHD_MAX_BAT_ENTRIES) {
    throw refusal(vhdChecks.batTooLarge, `VHD BAT declares ${entries} entries, more than the disk size allows (${blocksDeclared})`);
  }
  const batRange: ByteRange = { start: header.tableOffset, end: header.tableOffset + entries * 4, what: 'BAT' };
  if (batRange.start < VHD_FOOTER_SIZE || batRange.end > dataEnd || rangesOverlap(batRange, headerRange)) {
    throw refusal(vhdChecks.batBounds, `VHD BAT at ${header.tableOffset} (${entries} entries) is outside the file or overlaps the header`);
  }
  const bat = await source.read(batRange.start, entries * 4);
  const bitmapSize = sectorBitmapSize(blockSize);
  const blockOffsets = checkBlockPlacement(bat, entries, bitmapSize, blockSize, dataEnd, [headerRange, batRange]);

  return { kind: 'dynamic', virtualSize, details, blockSize, bitmapSize, blocksNeeded, blockOffsets };
}
