import type { Extent } from '../format';

/**
 * Merges pieces of the block map as they arrive in virtual order: zero runs into one zero
 * extent, data runs that are also contiguous in the file into one data extent. Compressed
 * pieces stay one extent each (each is its own deflate stream).
 *
 * Returning the finished extent (instead of yielding) keeps the per-cluster loop cheap.
 */
export class ExtentCoalescer {
  private pending: Extent | undefined;

  /** Adds the next piece; returns the extent it completed, if any. */
  add(piece: Extent): Extent | undefined {
    const last = this.pending;
    if (last && last.start + last.length === piece.start) {
      if (last.kind === 'zero' && piece.kind === 'zero') {
        last.length += piece.length;
        return undefined;
      }
      if (last.kind === 'data' && piece.kind === 'data' && last.sourceOffset + last.length === piece.sourceOffset) {
        last.length += piece.length;
        return undefined;
      }
    }
    this.pending = piece;
    return last;
  }

  /** The last extent, once the walk is over. */
  flush(): Extent | undefined {
    const last = this.pending;
    this.pending = undefined;
    return last;
  }
}
