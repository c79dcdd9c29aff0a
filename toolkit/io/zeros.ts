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
