/**
 * The dynamic VHD's block allocation table (BAT): every allocated block (bitmap + data) checked
 * against the file, the metadata and every other block before any of it is mapped.
 */
import { refusal } from '../safety-checks';
import { rangesOverlap, type ByteRange } from '../struct-layout';
import { vhdChecks } from './checks';
import { VHD_BAT_UNALLOCATED } from './vhd-dynamic-header';
import { VHD_FOOTER_SIZE } from './vhd-footer';

/**
 * Every allocated block (bitmap + data) must lie inside the file before the footer, clear of the
 * headers and the BAT, and clear of every other block: overlapping blocks would let one virtual
 * range silently alias another. Returns the decoded entries.
 */
export function checkBlockPlacement(
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
      throw refusal(vhdChecks.blockBounds, `VHD block ${i} at offset ${block.start} lies outside the file (the file is truncated or damaged)`);
    }
    for (const region of metadata) {
      if (rangesOverlap(block, region)) {
        throw refusal(vhdChecks.blockOverlap, `VHD block ${i} at offset ${block.start} overlaps the ${region.what}`);
      }
    }
  }
  const sorted = decoded.filter((e) => e !== VHD_BAT_UNALLOCATED).sort();
  for (let i = 1; i < sorted.length; i++) {
    if ((sorted[i] - sorted[i - 1]) * 512 < stride) {
      throw refusal(vhdChecks.blockOverlap, `two VHD blocks overlap at offset ${sorted[i] * 512}`);
    }
  }
  return decoded;
}
