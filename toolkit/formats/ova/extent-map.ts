/**
 * The OVA block map is its disk's, moved: the disk was opened through a window of the OVA, so
 * every stored extent's source offset is shifted by where the disk's bytes start in the tar.
 */
import type { Extent } from '../format';

export async function* rebasedExtents(diskExtents: AsyncIterable<Extent>, diskOffset: number): AsyncGenerator<Extent> {
  for await (const extent of diskExtents) {
    yield extent.kind === 'zero' ? extent : { ...extent, sourceOffset: extent.sourceOffset + diskOffset };
  }
}
