/**
 * Decompression of compressed units (qcow2 clusters, VMDK grains), batched per read and run on
 * worker threads (inflate-pool.ts) so that every core inflates.
 *
 * Inflation is capped at each unit's declared size: a decompression bomb stops as soon as it
 * produces more than that, instead of after filling memory.
 */
import { ImageFormatError } from '../errors';
import { compressedPayload, type CompressedExtent } from '../formats/compressed-payload';
import { InflateBatchError, inflateSharedBatch, type InflateFailure, type InflateUnit } from './inflate-pool';

export type { CompressedExtent };

/** The largest unit any supported format can declare (qcow2 clusters are ≤ 2 MiB; VMDK grains far smaller). */
export const MAX_COMPRESSED_UNIT_SIZE = 64 * 1024 * 1024;

/**
 * Inflates every extent in `extents` within shared memory: their source bytes lie in `shared`,
 * whose byte `inputAt` holds file offset `bufferOffset`; their kept bytes are written one after
 * another from byte `outputAt` of `shared`. Nothing is copied between threads.
 */
export async function inflateExtentsShared(
  extents: CompressedExtent[],
  shared: SharedArrayBuffer,
  inputAt: number,
  bufferOffset: number,
  outputAt: number,
): Promise<void> {
  if (extents.length === 0) return;
  let out = outputAt;
  const memory = Buffer.from(shared);
  const units: InflateUnit[] = extents.map((extent) => {
    // A framed unit (a VMDK grain marker) is checked here, on the thread that read its bytes.
    const payload = compressedPayload(extent, memory, inputAt + extent.sourceOffset - bufferOffset);
    const unit = {
      offset: payload.at,
      length: payload.length,
      codec: extent.codec,
      unitSize: extent.unitSize,
      skip: extent.skip ?? 0,
      keep: extent.length,
      outOffset: out,
    };
    out += extent.length;
    return unit;
  });
  try {
    await inflateSharedBatch(shared, units);
  } catch (error) {
    if (error instanceof InflateBatchError) throw refusal(extents[error.failure.index], error.failure);
    throw error;
  }
}

/** One unit on its own: `packed` holds exactly the extent's source bytes. */
export async function inflateExtent(extent: CompressedExtent, packed: Buffer): Promise<Buffer> {
  const shared = new SharedArrayBuffer(packed.length + extent.length);
  const memory = Buffer.from(shared);
  packed.copy(memory);
  await inflateExtentsShared([extent], shared, 0, extent.sourceOffset, packed.length);
  return memory.subarray(packed.length);
}

function refusal(extent: CompressedExtent, failure: InflateFailure): ImageFormatError {
  const where = `compressed data at file offset ${extent.sourceOffset} (virtual offset ${extent.start})`;
  switch (failure.kind) {
    case 'too-large':
      return new ImageFormatError('compressed-unit-too-large', `${where} inflates to more than its ${extent.unitSize}-byte unit`);
    case 'short':
      return new ImageFormatError('compressed-unit-short', `${where} inflates to ${failure.detail} bytes; ${(extent.skip ?? 0) + extent.length} were expected`);
    default:
      return new ImageFormatError('compressed-data-corrupt', `${where} is corrupt: ${failure.detail}`);
  }
}
