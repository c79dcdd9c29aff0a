/**
 * The block map is computed from tables inside an untrusted file, so the converter re-checks
 * what every reader promises: extents in order, contiguous, inside the virtual disk, and
 * pointing only at bytes that exist in the source.
 */
import { ImageFormatError } from '../errors';
import type { Extent } from '../formats/format';
import { MAX_COMPRESSED_UNIT_SIZE } from './codec';

export async function* checkedBlockMap(extents: AsyncIterable<Extent>, virtualSize: number, sourceSize: number): AsyncGenerator<Extent> {
  let next = 0;
  for await (const extent of extents) {
    checkExtent(extent, next, virtualSize, sourceSize);
    next = extent.start + extent.length;
    yield extent;
  }
  if (next !== virtualSize) {
    throw new ImageFormatError('block-map-incomplete', `the image's block map ends at byte ${next} of its ${virtualSize}-byte virtual disk`);
  }
}

function checkExtent(extent: Extent, expectedStart: number, virtualSize: number, sourceSize: number): void {
  const { start, length } = extent;
  if (!isOffset(start) || !isOffset(length) || length === 0) {
    throw new ImageFormatError('block-map-invalid', `the image's block map has an invalid extent at ${start} (length ${length})`);
  }
  if (start !== expectedStart) {
    const what = start > expectedStart ? 'a gap' : 'overlapping extents';
    throw new ImageFormatError('block-map-not-contiguous', `the image's block map has ${what} at virtual offset ${Math.min(start, expectedStart)}`);
  }
  if (start + length > virtualSize) {
    throw new ImageFormatError('block-map-beyond-disk', `the image maps data at virtual offset ${start + length - 1}, beyond its ${virtualSize}-byte virtual disk`);
  }
  if (extent.kind === 'zero') return;
  if (extent.kind === 'data') {
    if (!isOffset(extent.sourceOffset) || extent.sourceOffset + length > sourceSize) {
      throw outsideFile(start, extent.sourceOffset, length, sourceSize);
    }
    return;
  }
  if (extent.kind === 'compressed') {
    const { sourceOffset, sourceLength, unitSize, codec } = extent;
    const skip = extent.skip ?? 0;
    if (!isOffset(sourceOffset) || !isOffset(sourceLength) || sourceLength === 0 || sourceOffset + sourceLength > sourceSize) {
      throw outsideFile(start, sourceOffset, sourceLength, sourceSize);
    }
    if (codec !== 'deflate' && codec !== 'zlib') {
      throw new ImageFormatError('compression-unsupported', `the image uses an unsupported compression (${String(codec)})`);
    }
    if (!isOffset(unitSize) || unitSize === 0 || unitSize > MAX_COMPRESSED_UNIT_SIZE || !isOffset(skip) || skip + length > unitSize) {
      throw new ImageFormatError(
        'compressed-unit-invalid',
        `the image has a compressed unit of ${unitSize} bytes at virtual offset ${start} that cannot hold ${length} bytes after skipping ${skip}`,
      );
    }
    return;
  }
  throw new ImageFormatError('block-map-invalid', `the image's block map has an extent of unknown kind at ${start}`);
}

function isOffset(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function outsideFile(start: number, sourceOffset: number, length: number, sourceSize: number): ImageFormatError {
  return new ImageFormatError(
    'extent-outside-file',
    `the image maps virtual offset ${start} to ${length} bytes at file offset ${sourceOffset}, past the end of the ${sourceSize}-byte file`,
  );
}
