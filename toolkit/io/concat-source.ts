import { checkRange } from './file-source';
import type { RandomAccessSource } from './source';

/**
 * Ordered parts read as one source (an import manifest's parts, a bundle's parts). A read that
 * spans part boundaries is split into one read per part and reassembled.
 */
export class ConcatenatedSource implements RandomAccessSource {
  readonly size: number;
  /** starts[i] is the offset of parts[i] in the whole; starts[parts.length] === size. */
  private readonly starts: number[];

  constructor(
    private readonly parts: RandomAccessSource[],
    readonly name: string,
  ) {
    this.starts = [0];
    for (const part of parts) this.starts.push(this.starts[this.starts.length - 1] + part.size);
    this.size = this.starts[parts.length];
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, offset, length);
    if (length === 0) return Buffer.alloc(0);
    const pieces: Promise<Buffer>[] = [];
    let position = offset;
    const end = offset + length;
    for (let index = this.partAt(offset); position < end; index++) {
      const partEnd = this.starts[index + 1];
      if (partEnd === this.starts[index]) continue; // an empty part holds nothing
      const n = Math.min(end, partEnd) - position;
      pieces.push(this.parts[index].read(position - this.starts[index], n));
      position += n;
    }
    const buffers = await Promise.all(pieces);
    return buffers.length === 1 ? buffers[0] : Buffer.concat(buffers, length);
  }

  async close(): Promise<void> {
    await Promise.all(this.parts.map((part) => part.close()));
  }

  /** Index of the part holding byte `offset` (offset < size). */
  private partAt(offset: number): number {
    let low = 0;
    let high = this.parts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.starts[middle] <= offset) low = middle;
      else high = middle - 1;
    }
    return low;
  }
}
