/**
 * Where a compressed extent's stream lies within its source bytes. Most formats know it exactly
 * from their tables (qcow2). A streamOptimized VMDK knows only where each grain's marker is, so
 * its extents carry an upper bound and a frame, read here once the bytes are in memory.
 */
import type { Extent } from './format';
import { grainMarkerPayload } from './vmdk/grain-marker';

export type CompressedExtent = Extent & { kind: 'compressed' };

/** `bytes[at]` holds the extent's first source byte; returns the compressed stream's place in `bytes`. */
export function compressedPayload(extent: CompressedExtent, bytes: Buffer, at: number): { at: number; length: number } {
  if (!extent.frame) return { at, length: extent.sourceLength };
  return grainMarkerPayload({ sourceOffset: extent.sourceOffset, sourceLength: extent.sourceLength, lba: extent.frame.lba, grainBytes: extent.unitSize }, bytes, at);
}
