import type { ByteSink } from './sink';

/**
 * One shared, never-written buffer of zeros: sinks that must materialise zeros (S3 uploads,
 * hashes) hand out slices of it instead of allocating per call.
 */
export const ZERO_BLOCK_SIZE = 1024 * 1024;
const zeroBlock = Buffer.alloc(ZERO_BLOCK_SIZE);

/** Yields zero-filled buffers that together are `length` bytes long. Callers must not modify them. */
export function* zeroSlices(length: number): Generator<Buffer> {
  let left = length;
  while (left > 0) {
    const n = Math.min(left, ZERO_BLOCK_SIZE);
    yield zeroBlock.subarray(0, n);
    left -= n;
  }
}

/** True when every byte of `data` is zero; compares against the shared zero buffer (memcmp), never byte by byte. */
export function isAllZero(data: Buffer): boolean {
  for (let at = 0; at < data.length; at += ZERO_BLOCK_SIZE) {
    const end = Math.min(at + ZERO_BLOCK_SIZE, data.length);
    if (!data.subarray(at, end).equals(zeroBlock.subarray(0, end - at))) return false;
  }
  return true;
}

/** Zero detection granularity inside data: fine enough to find unwritten areas, coarse enough to be cheap. */
export const ZERO_SCAN_BLOCK = 64 * 1024;

/**
 * Writes `data`, handing its all-zero 64 KiB blocks to writeZeros: data often holds long runs of
 * zeros (a raw source has no map of its holes), and a file sink leaves those as holes. Other
 * sinks write zeros either way.
 */
export async function writeSkippingZeroBlocks(data: Buffer, sink: ByteSink): Promise<void> {
  let runStart = 0;
  let runIsZero: boolean | undefined;
  const flush = async (end: number): Promise<void> => {
    if (end === runStart) return;
    if (runIsZero) await sink.writeZeros(end - runStart);
    else await sink.write(data.subarray(runStart, end));
    runStart = end;
  };
  for (let offset = 0; offset < data.length; offset += ZERO_SCAN_BLOCK) {
    const end = Math.min(offset + ZERO_SCAN_BLOCK, data.length);
    const isZero = isAllZero(data.subarray(offset, end));
    if (runIsZero !== undefined && isZero !== runIsZero) await flush(offset);
    runIsZero = isZero;
  }
  await flush(data.length);
}
