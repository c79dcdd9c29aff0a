/**
 * Turns a block map into source reads of a sensible size: one ranged GET per few MiB rather
 * than one per grain or cluster, and never one huge read for a huge extent.
 *
 * - A data extent longer than `maxReadBytes` is split into pieces.
 * - Extents whose source bytes follow each other (or nearly: gaps ≤ `maxGapBytes`, e.g. the
 *   markers between VMDK grains) are fetched by one read and sliced apart afterwards.
 * - Zero extents never cause a read; they ride along in whichever step comes next in order.
 */
import type { Extent } from '../formats/format';

export type ReadItem = Extent;

export type ReadStep =
  /** Only zeros: nothing to fetch. */
  | { kind: 'zero'; start: number; length: number }
  /** One read of [sourceOffset, sourceOffset + sourceLength) that yields `items` in virtual order. */
  | { kind: 'read'; sourceOffset: number; sourceLength: number; items: ReadItem[]; inflatedBytes: number };

export interface ReadPlanOptions {
  maxReadBytes: number;
  maxGapBytes: number;
  /** Bounds the bookkeeping of one step (a read of thousands of tiny grains). */
  maxItemsPerRead: number;
  /** Bound on the inflated bytes of one step (default 4 × maxReadBytes); one unit always fits. */
  maxInflatedBytes?: number;
}

export const DEFAULT_READ_PLAN: ReadPlanOptions = {
  maxReadBytes: 8 * 1024 * 1024,
  maxGapBytes: 64 * 1024,
  maxItemsPerRead: 4096,
};

export async function* planReads(extents: AsyncIterable<Extent>, options: ReadPlanOptions = DEFAULT_READ_PLAN): AsyncGenerator<ReadStep> {
  let group: (ReadStep & { kind: 'read' }) | undefined;
  let pendingZero: { start: number; length: number } | undefined;

  for await (const extent of extents) {
    if (extent.kind === 'zero') {
      if (group) appendItem(group, extent);
      else if (pendingZero) pendingZero.length += extent.length;
      else pendingZero = { start: extent.start, length: extent.length };
      continue;
    }
    for (const piece of splitExtent(extent, options.maxReadBytes)) {
      const [pieceOffset, pieceLength] = sourceRange(piece);
      if (group && !fits(group, piece, pieceOffset, pieceLength, options)) {
        yield group;
        group = undefined;
      }
      if (!group) {
        if (pendingZero) {
          yield { kind: 'zero', ...pendingZero };
          pendingZero = undefined;
        }
        group = { kind: 'read', sourceOffset: pieceOffset, sourceLength: 0, items: [], inflatedBytes: 0 };
      }
      appendItem(group, piece);
      group.sourceLength = Math.max(group.sourceLength, pieceOffset + pieceLength - group.sourceOffset);
      if (piece.kind === 'compressed') group.inflatedBytes += piece.unitSize;
    }
  }
  if (group) yield group;
  if (pendingZero) yield { kind: 'zero', ...pendingZero };
}

function splitExtent(extent: Extent & { kind: 'data' | 'compressed' }, maxReadBytes: number): Extent[] {
  if (extent.kind === 'compressed' || extent.length <= maxReadBytes) return [extent];
  const pieces: Extent[] = [];
  for (let done = 0; done < extent.length; done += maxReadBytes) {
    const length = Math.min(maxReadBytes, extent.length - done);
    pieces.push({ kind: 'data', start: extent.start + done, length, sourceOffset: extent.sourceOffset + done });
  }
  return pieces;
}

function sourceRange(extent: Extent): [number, number] {
  if (extent.kind === 'data') return [extent.sourceOffset, extent.length];
  if (extent.kind === 'compressed') return [extent.sourceOffset, extent.sourceLength];
  return [0, 0];
}

/**
 * A piece joins the current read when its bytes start inside the read or shortly after it, and
 * the read stays small — in bytes fetched and in bytes inflated. Overlap is normal: qcow2
 * compressed clusters are packed tightly while their lengths are rounded up to whole sectors.
 */
function fits(group: ReadStep & { kind: 'read' }, piece: Extent, offset: number, length: number, options: ReadPlanOptions): boolean {
  const groupEnd = group.sourceOffset + group.sourceLength;
  const inflated = piece.kind === 'compressed' ? piece.unitSize : 0;
  return (
    offset >= group.sourceOffset &&
    offset <= groupEnd + options.maxGapBytes &&
    Math.max(groupEnd, offset + length) - group.sourceOffset <= options.maxReadBytes &&
    // Bounds what many units sharing the same compressed bytes could inflate to in one step.
    group.inflatedBytes + inflated <= (options.maxInflatedBytes ?? options.maxReadBytes * 4) &&
    group.items.length < options.maxItemsPerRead
  );
}

/** Adds an item, merging it into the previous one when both are zeros or both are byte-adjacent data. */
function appendItem(group: ReadStep & { kind: 'read' }, item: Extent): void {
  const last = group.items[group.items.length - 1];
  if (last && last.start + last.length === item.start) {
    if (last.kind === 'zero' && item.kind === 'zero') {
      group.items[group.items.length - 1] = { ...last, length: last.length + item.length };
      return;
    }
    if (last.kind === 'data' && item.kind === 'data' && last.sourceOffset + last.length === item.sourceOffset) {
      group.items[group.items.length - 1] = { ...last, length: last.length + item.length };
      return;
    }
  }
  group.items.push(item);
}
