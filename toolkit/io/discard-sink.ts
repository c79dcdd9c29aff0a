import { checkHeadHold, checkHeadPatch, type ByteSink } from './sink';

/**
 * A sink that keeps nothing but a count (and, optionally, the first bytes): for checking an
 * image end to end without writing it anywhere, and for measuring read speed.
 *
 * It can patch its head like a file, so a writer that patches (a dynamic VHD) takes the same
 * path and produces the same size as it would into a file; patches reach the kept bytes.
 */
export class DiscardSink implements ByteSink {
  readonly name = '(discarded)';
  private size = 0;
  /** The first bytes, zero until written, so a zero run costs nothing here. */
  private readonly kept: Buffer;
  private heldHead: number | undefined;

  constructor(keepHeadBytes = 0) {
    this.kept = Buffer.alloc(keepHeadBytes);
  }

  async write(chunk: Buffer): Promise<void> {
    this.keep(this.size, chunk);
    this.size += chunk.length;
  }

  async writeZeros(length: number): Promise<void> {
    this.size += length;
  }

  holdHead(length: number): void {
    checkHeadHold(this.name, length, this.size, this.heldHead !== undefined);
    this.heldHead = length;
  }

  async patchHead(offset: number, chunk: Buffer): Promise<void> {
    checkHeadPatch(this.name, offset, chunk.length, this.heldHead ?? 0, this.size);
    this.keep(offset, chunk);
  }

  async finish(): Promise<{ size: number }> {
    return { size: this.size };
  }

  async abort(): Promise<void> {}

  /** The first `keepHeadBytes` bytes written (fewer if less was written). */
  head(): Buffer {
    return Buffer.from(this.kept.subarray(0, Math.min(this.size, this.kept.length)));
  }

  /** Copies whatever part of `chunk`, destined for `offset`, falls inside the kept head. */
  private keep(offset: number, chunk: Buffer): void {
    if (offset < this.kept.length) chunk.copy(this.kept, offset, 0, this.kept.length - offset);
  }
}
