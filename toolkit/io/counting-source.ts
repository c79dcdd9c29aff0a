/** A source that counts the bytes read through it (for the bytes-read metric) and nothing else. */
import type { ByteRange, RandomAccessSource } from './source';

export class CountingSource implements RandomAccessSource {
  bytesRead = 0;
  readonly readInto?: (offset: number, target: Buffer) => Promise<void>;
  readonly dataRanges?: (offset: number, length: number) => Iterable<ByteRange>;

  constructor(private readonly inner: RandomAccessSource) {
    if (inner.readInto) {
      const readInto = inner.readInto.bind(inner);
      this.readInto = async (offset, target) => {
        await readInto(offset, target);
        this.bytesRead += target.length;
      };
    }
    if (inner.dataRanges) this.dataRanges = inner.dataRanges.bind(inner);
  }

  get size(): number {
    return this.inner.size;
  }

  get name(): string {
    return this.inner.name;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const data = await this.inner.read(offset, length);
    this.bytesRead += data.length;
    return data;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
