/**
 * One read step into one slab: the source bytes land at the start of the slab, and compressed
 * units inflate (on the inflate workers, in place) into the slab right after them.
 */
import type { VirtualChunk } from '../formats/format';
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
 * Fills `slab` for `step` and returns the step's chunks in order: zero items as zero chunks,
 * data as views of the slab. Items next to each other in the disk whose bytes also sit side by
 * side in the slab (adjacent data, consecutive inflated units) come out as one view.
 */
export async function loadStep(step: ReadStepOf, slab: SharedArrayBuffer, source: RandomAccessSource): Promise<VirtualChunk[]> {
  const memory = Buffer.from(slab);
  const input = memory.subarray(0, step.sourceLength);
  if (source.readInto) await source.readInto(step.sourceOffset, input);
  else (await source.read(step.sourceOffset, step.sourceLength)).copy(input);

  const compressed = step.items.filter((item): item is CompressedExtent => item.kind === 'compressed');
  await inflateExtentsShared(compressed, slab, 0, step.sourceOffset, step.sourceLength);

  const chunks: VirtualChunk[] = [];
  let nextInflated = step.sourceLength;
  for (const item of step.items) {
    if (item.kind === 'zero') {
      chunks.push({ offset: item.start, zeroLength: item.length });
      continue;
    }
    let from: number;
    if (item.kind === 'data') from = item.sourceOffset - step.sourceOffset;
    else {
      from = nextInflated;
      nextInflated += item.length;
    }
    const last = chunks[chunks.length - 1];
    if (last && 'data' in last && last.offset + last.data.length === item.start && last.data.byteOffset + last.data.length === from) {
      last.data = memory.subarray(last.data.byteOffset, from + item.length);
    } else chunks.push({ offset: item.start, data: memory.subarray(from, from + item.length) });
  }
  return chunks;
}
