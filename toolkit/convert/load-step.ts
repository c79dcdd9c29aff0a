/**
 * One read step into one slab: the source bytes land at the start of the slab, and compressed
 * units inflate (on the inflate workers, in place) into the slab right after them.
 */
import type { RandomAccessSource } from '../io/source';
import { inflateExtentsShared, type CompressedExtent } from './codec';
import type { ReadStep } from './read-plan';

export type ReadStepOf = ReadStep & { kind: 'read' };

/** Bytes a step needs in its slab: the read itself, then the kept bytes of its compressed units. */
export function slabBytesOf(step: ReadStepOf): number {
  let kept = 0;
  for (const item of step.items) if (item.kind === 'compressed') kept += item.length;
  return step.sourceLength + kept;
}

/**
 * Fills `slab` for `step` and returns each item's bytes as a view of the slab, in item order
 * (undefined for zero items). Items next to each other in the disk whose bytes also sit side by
 * side in the slab (adjacent data, consecutive inflated units) can be joined by a view.
 */
export async function loadStep(step: ReadStepOf, slab: SharedArrayBuffer, source: RandomAccessSource): Promise<(Buffer | undefined)[]> {
  const memory = Buffer.from(slab);
  const input = memory.subarray(0, step.sourceLength);
  if (source.readInto) await source.readInto(step.sourceOffset, input);
  else (await source.read(step.sourceOffset, step.sourceLength)).copy(input);

  const compressed = step.items.filter((item): item is CompressedExtent => item.kind === 'compressed');
  await inflateExtentsShared(compressed, slab, 0, step.sourceOffset, step.sourceLength);

  let nextInflated = step.sourceLength;
  return step.items.map((item) => {
    if (item.kind === 'zero') return undefined;
    if (item.kind === 'data') {
      const from = item.sourceOffset - step.sourceOffset;
      return memory.subarray(from, from + item.length);
    }
    const from = nextInflated;
    nextInflated += item.length;
    return memory.subarray(from, from + item.length);
  });
}
