/**
 * RAW: the file is the disk. There is no header to check, so RAW is what an image is when no
 * other format recognises it, and its virtual size is the file size exactly — a RAW import must
 * come out byte-identical to what was uploaded, even when that is not a multiple of 512.
 */
import { ImageFormatError } from '../errors';
import type { ByteSink } from '../io/sink';
import type { RandomAccessSource } from '../io/source';
import { writeSkippingZeroBlocks } from '../io/zeros';
import type { DiskFormat, DiskImageReader, DiskImageWriter, Extent, VirtualChunk } from './format';

export const rawFormat: DiskFormat = {
  name: 'raw',
  // Any bytes are a raw disk; the registry asks raw last, only when nothing else matched.
  async sniff() {
    return true;
  },
  async open(source, options): Promise<DiskImageReader> {
    if (source.size === 0) throw new ImageFormatError('image-empty', `${source.name} is empty (0 bytes)`);
    if (source.size > options.maxVirtualSize) {
      throw new ImageFormatError(
        'virtual-size-too-large',
        `the disk is ${source.size} bytes, larger than the ${options.maxVirtualSize}-byte limit`,
      );
    }
    return {
      info: { format: 'raw', virtualSize: source.size, fileSize: source.size, allocatedSize: allocatedBytes(source) },
      async *blockMap(): AsyncGenerator<Extent> {
        yield* rawExtents(source);
      },
      async close() {},
    };
  },
};

/**
 * Holes shorter than this are read as data: the writers find their zeros anyway, and a file
 * fragmented into 4 KiB pieces would otherwise make as many extents.
 */
export const MIN_HOLE = 64 * 1024;

/** The bytes a sparse source really stores (its holes left out), when it can tell. */
function allocatedBytes(source: RandomAccessSource): number | undefined {
  if (!source.dataRanges) return undefined;
  let total = 0;
  for (const range of source.dataRanges(0, source.size)) total += range.length;
  return total;
}

/**
 * The raw disk's map: its data ranges as data, its holes (a sparse file's, when the source can
 * tell) as zeros that are never read. Without holes known, the whole disk is one data extent.
 */
export function* rawExtents(source: RandomAccessSource): Generator<Extent> {
  const ranges = source.dataRanges?.(0, source.size) ?? [{ start: 0, length: source.size }];
  const dataExtent = (start: number, end: number): Extent => ({ kind: 'data', start, length: end - start, sourceOffset: start });
  let position = 0; // everything before it has been yielded
  let data: { start: number; end: number } | undefined; // not yielded yet: it may still grow over a short hole
  for (const range of ranges) {
    if (range.length <= 0) continue;
    const end = range.start + range.length;
    if (data && range.start - data.end < MIN_HOLE) {
      data.end = end;
      continue;
    }
    if (data) {
      yield dataExtent(data.start, data.end);
      position = data.end;
    }
    if (range.start - position < MIN_HOLE) {
      data = { start: position, end };
    } else {
      yield { kind: 'zero', start: position, length: range.start - position };
      data = { start: range.start, end };
    }
  }
  if (data) {
    if (source.size - data.end < MIN_HOLE) data.end = source.size;
    yield dataExtent(data.start, data.end);
    position = data.end;
  }
  if (position < source.size) yield { kind: 'zero', start: position, length: source.size - position };
}

export const rawWriter: DiskImageWriter = {
  name: 'raw',
  async write({ chunks }: { virtualSize: number; chunks: AsyncIterable<VirtualChunk> }, sink: ByteSink): Promise<void> {
    for await (const chunk of chunks) {
      if ('zeroLength' in chunk) await sink.writeZeros(chunk.zeroLength);
      else await writeSkippingZeroBlocks(chunk.data, sink);
    }
  },
};
