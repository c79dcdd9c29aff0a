import { ConcurrencyLimit } from '../map-limit';
import { checkRange } from './file-source';
import type { RandomAccessSource } from './source';

interface Piece {
  index: number;
  partOffset: number;
  length: number;
  /** Where the piece goes in the read's buffer. */
  at: number;
}

/** Part reads in flight at once, over all reads of one source (default). */
export const DEFAULT_PART_READS_AT_ONCE = 16;

/**
 * Ordered parts read as one source (an import manifest's parts, a bundle's parts). A read that
 * spans part boundaries is split into one read per part and reassembled.
 *
 * At most `partReadsAtOnce` part reads are in flight, whatever the reads asked of the whole: one
 * read over thousands of tiny parts would otherwise start thousands of requests at once (it
 * did: 23,500 one-byte parts, every file descriptor of the process).
 */
export class ConcatenatedSource implements RandomAccessSource {
  readonly size: number;
  /** starts[i] is the offset of parts[i] in the whole; starts[parts.length] === size. */
  private readonly starts: number[];
  private readonly partReads: ConcurrencyLimit;

  constructor(
    private readonly parts: RandomAccessSource[],
    readonly name: string,
    options: { partReadsAtOnce?: number } = {},
  ) {
    this.partReads = new ConcurrencyLimit(options.partReadsAtOnce ?? DEFAULT_PART_READS_AT_ONCE);
    this.starts = [0];
    for (const part of parts) this.starts.push(this.starts[this.starts.length - 1] + part.size);
    this.size = this.starts[parts.length];
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, offset, length);
    if (length === 0) return Buffer.alloc(0);
    const pieces = this.piecesOf(offset, length);
    if (pieces.length === 1) return this.partReads.run(() => this.parts[pieces[0].index].read(pieces[0].partOffset, pieces[0].length));
    const target = Buffer.allocUnsafe(length);
    await this.readPieces(pieces, target);
    return target;
  }

  /** Each part reads its piece straight into `target` when it can (no per-read allocation). */
  async readInto(offset: number, target: Buffer): Promise<void> {
    checkRange(this, offset, target.length);
    if (target.length > 0) await this.readPieces(this.piecesOf(offset, target.length), target);
  }

  private async readPieces(pieces: Piece[], target: Buffer): Promise<void> {
    // Started one after another as slots free up; after a failure no further piece starts.
    let failed = false;
    await Promise.all(
      pieces.map(({ index, partOffset, length, at }) =>
        this.partReads.run(async () => {
          if (failed) return;
          const part = this.parts[index];
          const into = target.subarray(at, at + length);
          try {
            if (part.readInto) await part.readInto(partOffset, into);
            else (await part.read(partOffset, length)).copy(into);
          } catch (error) {
            failed = true;
            throw error;
          }
        }),
      ),
    );
  }

  /** The parts a read of [offset, offset + length) touches, and where each piece goes. */
  private piecesOf(offset: number, length: number): Piece[] {
    const pieces: Piece[] = [];
    let position = offset;
    const end = offset + length;
    for (let index = this.partAt(offset); position < end; index++) {
      const partEnd = this.starts[index + 1];
      if (partEnd === this.starts[index]) continue; // an empty part holds nothing
      const n = Math.min(end, partEnd) - position;
      pieces.push({ index, partOffset: position - this.starts[index], length: n, at: position - offset });
      position += n;
    }
    return pieces;
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
