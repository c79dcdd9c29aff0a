import type { Extent } from '../format';

/**
 * Merges neighbouring extents that continue each other (zero after zero, data whose source bytes
 * follow on), so a disk written contiguously comes out as a few large extents rather than one
 * per block. Streams: holds one extent at a time.
 */
export async function* coalesceExtents(extents: AsyncIterable<Extent> | Iterable<Extent>): AsyncGenerator<Extent> {
  let pending: Extent | null = null;
  for await (const next of extents) {
    if (pending && continues(pending, next)) {
      pending.length += next.length;
      continue;
    }
    if (pending) yield pending;
    pending = { ...next };
  }
  if (pending) yield pending;
}

function continues(last: Extent, next: Extent): boolean {
  if (last.start + last.length !== next.start) return false;
  if (last.kind === 'zero' && next.kind === 'zero') return true;
  return last.kind === 'data' && next.kind === 'data' && last.sourceOffset + last.length === next.sourceOffset;
}
