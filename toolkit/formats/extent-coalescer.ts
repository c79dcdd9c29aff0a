import type { Extent } from './format';

/**
 * The one place where block-map pieces are merged, for every reader: as pieces arrive in
 * virtual order, zero runs become one zero extent, and data runs that are also contiguous in
 * the file become one data extent. Compressed pieces stay one extent each (each is its own
 * stream). A disk written contiguously thus comes out as a few large extents, not one per
 * cluster, grain or block.
 *
 * `add` returns the extent a piece completed instead of yielding it, so a per-cluster loop
 * stays a plain loop; `coalesceExtents` wraps the same rule for readers that stream.
 */
export class ExtentCoalescer {
  private pending: Extent | undefined;

  /** Adds the next piece; returns the extent it completed, if any. The piece itself is never changed. */
  add(piece: Extent): Extent | undefined {
    const last = this.pending;
    if (last && continues(last, piece)) {
      last.length += piece.length;
      return undefined;
    }
    // A copy: the pending extent grows in place, and the piece may belong to the caller.
    this.pending = { ...piece };
    return last;
  }

  /** The last extent, once the walk is over. */
  flush(): Extent | undefined {
    const last = this.pending;
    this.pending = undefined;
    return last;
  }
}

/** The coalesced stream of `pieces`; holds one extent at a time. */
export async function* coalesceExtents(pieces: AsyncIterable<Extent> | Iterable<Extent>): AsyncGenerator<Extent> {
  const coalescer = new ExtentCoalescer();
  for await (const piece of pieces) {
    const done = coalescer.add(piece);
    if (done) yield done;
  }
  const last = coalescer.flush();
  if (last) yield last;
}

function continues(last: Extent, next: Extent): boolean {
  if (last.start + last.length !== next.start) return false;
  if (last.kind === 'zero' && next.kind === 'zero') return true;
  return last.kind === 'data' && next.kind === 'data' && last.sourceOffset + last.length === next.sourceOffset;
}
