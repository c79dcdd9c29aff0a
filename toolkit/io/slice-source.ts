import { SourceRangeError, type RandomAccessSource } from './source';

/**
 * A window [offset, offset + length) of another source, seen as a source of its own: a disk
 * inside a tar (OVA) is read in place, without extracting it. The slice does not own the
 * parent; closing it leaves the parent open for whoever opened it.
 */
export class SliceSource implements RandomAccessSource {
  constructor(
    private readonly parent: RandomAccessSource,
    readonly offset: number,
    readonly size: number,
    readonly name: string,
  ) {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(size) || offset < 0 || size < 0 || offset + size > parent.size) {
      throw new SourceRangeError(parent.name, offset, size, parent.size);
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new SourceRangeError(this.name, offset, length, this.size);
    }
    return this.parent.read(this.offset + offset, length);
  }

  async readInto(offset: number, target: Buffer): Promise<void> {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + target.length > this.size) {
      throw new SourceRangeError(this.name, offset, target.length, this.size);
    }
    if (this.parent.readInto) await this.parent.readInto(this.offset + offset, target);
    else (await this.parent.read(this.offset + offset, target.length)).copy(target);
  }

  async close(): Promise<void> {
    // Nothing of our own to release; see the class comment.
  }
}
