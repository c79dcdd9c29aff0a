/**
 * RAW: the file is the disk. There is no header to check, so RAW is what an image is when no
 * other format recognises it, and its virtual size is the file size exactly — a RAW import must
 * come out byte-identical to what was uploaded, even when that is not a multiple of 512.
 */
import { ImageFormatError } from '../errors';
import type { ByteSink } from '../io/sink';
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
      info: { format: 'raw', virtualSize: source.size, fileSize: source.size },
      async *blockMap(): AsyncGenerator<Extent> {
        yield { kind: 'data', start: 0, length: source.size, sourceOffset: 0 };
      },
      async close() {},
    };
  },
};

export const rawWriter: DiskImageWriter = {
  name: 'raw',
  async write({ chunks }: { virtualSize: number; chunks: AsyncIterable<VirtualChunk> }, sink: ByteSink): Promise<void> {
    for await (const chunk of chunks) {
      if ('zeroLength' in chunk) await sink.writeZeros(chunk.zeroLength);
      else await writeSkippingZeroBlocks(chunk.data, sink);
    }
  },
};
