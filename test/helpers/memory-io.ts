/** Test helper: a source over a Buffer and a sink into memory, for code that takes the IO interfaces. */
import { SourceRangeError, type RandomAccessSource } from '../../toolkit/io/source';
import { checkHeadHold, checkHeadPatch, type ByteSink } from '../../toolkit/io/sink';

export class BufferSource implements RandomAccessSource {
  readonly size: number;
  reads = 0;
  constructor(private readonly bytes: Buffer, readonly name = 'memory') {
    this.size = bytes.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || length < 0 || offset + length > this.size) throw new SourceRangeError(this.name, offset, length, this.size);
    this.reads++;
    return Buffer.from(this.bytes.subarray(offset, offset + length));
  }
  async close(): Promise<void> {}
}

/** Keeps everything written; can patch its head, like a file. */
export class MemorySink implements ByteSink {
  private readonly parts: Buffer[] = [];
  private length = 0;
  private heldHead: number | undefined;
  constructor(readonly name = 'memory') {}
  async write(chunk: Buffer): Promise<void> { this.parts.push(Buffer.from(chunk)); this.length += chunk.length; }
  async writeZeros(length: number): Promise<void> { this.parts.push(Buffer.alloc(length)); this.length += length; }
  holdHead(length: number): void {
    checkHeadHold(this.name, length, this.length, this.heldHead !== undefined);
    this.heldHead = length;
  }
  async patchHead(offset: number, chunk: Buffer): Promise<void> {
    checkHeadPatch(this.name, offset, chunk.length, this.heldHead ?? 0, this.length);
    const all = this.bytes();
    chunk.copy(all, offset);
    this.parts.splice(0, this.parts.length, all);
  }
  async finish(): Promise<{ size: number }> { return { size: this.length }; }
  async abort(): Promise<void> { this.parts.length = 0; this.length = 0; }
  bytes(): Buffer { return Buffer.concat(this.parts); }
}
