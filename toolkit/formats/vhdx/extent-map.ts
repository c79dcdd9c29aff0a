/**
 * The VHDX block map: payload blocks in virtual order, fully present ones as data, every other
 * state as zeros (block-table.ts has refused the states that are neither).
 */
import type { RandomAccessSource } from '../../io/source';
import { coalesceExtents } from '../extent-coalescer';
import type { Extent } from '../format';
import { payloadBlocks, type BatGeometry } from './block-table';
import { PAYLOAD_STATE } from './header';

export function vhdxExtents(source: RandomAccessSource, geometry: BatGeometry): AsyncIterable<Extent> {
  return coalesceExtents(blockExtents(source, geometry));
}

async function* blockExtents(source: RandomAccessSource, geometry: BatGeometry): AsyncGenerator<Extent> {
  for await (const block of payloadBlocks(source, geometry)) {
    if (block.state === PAYLOAD_STATE.fullyPresent) {
      yield { kind: 'data', start: block.start, length: block.length, sourceOffset: block.fileOffset };
    } else {
      yield { kind: 'zero', start: block.start, length: block.length };
    }
  }
}
