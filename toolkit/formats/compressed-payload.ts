/**
 * Where a compressed extent's stream lies within its source bytes. Most formats know it exactly
 * from their tables (qcow2); an extent whose format only bounds it carries a frame that finds it.
 */
import type { CompressedExtent } from './format';

export type { CompressedExtent };

/** `bytes[at]` holds the extent's first source byte; returns the compressed stream's place in `bytes`. */
export function compressedPayload(extent: CompressedExtent, bytes: Buffer, at: number): { at: number; length: number } {
  if (!extent.frame) return { at, length: extent.sourceLength };
  return extent.frame.locate(extent, bytes, at);
}
