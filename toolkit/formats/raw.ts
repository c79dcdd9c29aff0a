/**
 * RAW: the file is the disk. There is no header to check, so RAW is what an image is when no
 * other format recognises it, and its virtual size is the file size exactly — a RAW import must
 * come out byte-identical to what was uploaded, even when that is not a multiple of 512.
 */
import { ImageFormatError } from '../errors';
import type { ByteSink } from '../io/sink';
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
      info: { format: 'raw', virtualSize: source.size, fileSize: source.size },
      async *blockMap(): AsyncGenerator<Extent> {
        yield { kind: 'data', start: 0, length: source.size, sourceOffset: 0 };
      },
      async close() {},
    };
  },
};

/** Zero detection granularity: fine enough to find unwritten areas, coarse enough to be cheap. */
const ZERO_SCAN_BLOCK = 64 * 1024;
const zeroBlock = Buffer.alloc(ZERO_SCAN_BLOCK);

export const rawWriter: DiskImageWriter = {
  name: 'raw',
  async write({ chunks }: { virtualSize: number; chunks: AsyncIterable<VirtualChunk> }, sink: ByteSink): Promise<void> {
    for await (const chunk of chunks) {
      if ('zeroLength' in chunk) await sink.writeZeros(chunk.zeroLength);
      else await writeSkippingZeroBlocks(chunk.data, sink);
    }
  },
};

/**
 * Data chunks often hold long runs of zeros (a raw source has no map of its holes). Handing those
 * to writeZeros lets a file sink leave holes; other sinks write zeros either way.
 */
async function writeSkippingZeroBlocks(data: Buffer, sink: ByteSink): Promise<void> {
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
    const isZero = data.subarray(offset, end).equals(zeroBlock.subarray(0, end - offset));
    if (runIsZero !== undefined && isZero !== runIsZero) await flush(offset);
    runIsZero = isZero;
  }
  await flush(data.length);
}
