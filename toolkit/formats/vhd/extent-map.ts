/**
 * The VHD block map. A fixed disk is one data extent (the file before its footer). A dynamic
 * disk maps block by block from its BAT: an unallocated block reads as zeros, an allocated one
 * is read in full past its sector bitmap. The bitmap is deliberately ignored, as qemu does for
 * disks without a parent: producers set every bit of the blocks they allocate, and a clear bit
 * only says "reads as zeros", which a freshly allocated block's bytes already are.
 */
import { coalesceExtents } from '../extent-coalescer';
import type { Extent } from '../format';
import type { VhdLayout } from './layout';
import { VHD_BAT_UNALLOCATED } from './vhd-dynamic-header';

export function vhdExtents(layout: VhdLayout): AsyncIterable<Extent> {
  return coalesceExtents(blockExtents(layout));
}

/** Bytes of the virtual disk the image stores. */
export function vhdAllocatedBytes(layout: VhdLayout): number {
  if (layout.kind === 'fixed') return layout.virtualSize;
  const { blocksNeeded, blockOffsets, blockSize, virtualSize } = layout;
  let allocated = 0;
  for (let i = 0; i < blocksNeeded; i++) {
    if (blockOffsets[i] !== VHD_BAT_UNALLOCATED) allocated += Math.min(blockSize, virtualSize - i * blockSize);
  }
  return allocated;
}

/**
 * Generated from the BAT on demand: a BAT of many small blocks would otherwise become millions
 * of extent objects held at once.
 */
function* blockExtents(layout: VhdLayout): Iterable<Extent> {
  if (layout.kind === 'fixed') {
    if (layout.virtualSize > 0) yield { kind: 'data', start: 0, length: layout.virtualSize, sourceOffset: 0 };
    return;
  }
  const { blocksNeeded, blockOffsets, blockSize, bitmapSize, virtualSize } = layout;
  for (let i = 0; i < blocksNeeded; i++) {
    const start = i * blockSize;
    const length = Math.min(blockSize, virtualSize - start);
    const entry = blockOffsets[i];
    if (entry === VHD_BAT_UNALLOCATED) yield { kind: 'zero', start, length };
    else yield { kind: 'data', start, length, sourceOffset: entry * 512 + bitmapSize };
  }
}
