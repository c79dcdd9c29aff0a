import type { ByteSink } from './sink';

/**
 * A sink that keeps nothing but a count (and, optionally, the first bytes): for checking an
 * image end to end without writing it anywhere, and for measuring read speed.
 */
export class DiscardSink implements ByteSink {
  readonly name = '(discarded)';
  private size = 0;
  private readonly headParts: Buffer[] = [];
  private headLength = 0;

  constructor(private readonly keepHeadBytes = 0) {}

  async write(chunk: Buffer): Promise<void> {
    this.keep(chunk);
    this.size += chunk.length;
  }

  async writeZeros(length: number): Promise<void> {
    if (this.headLength < this.keepHeadBytes) this.keep(Buffer.alloc(Math.min(length, this.keepHeadBytes - this.headLength)));
    this.size += length;
  }

  async finish(): Promise<{ size: number }> {
    return { size: this.size };
  }

  async abort(): Promise<void> {}

  /** The first `keepHeadBytes` bytes written (fewer if less was written). */
  head(): Buffer {
    return Buffer.concat(this.headParts, this.headLength);
  }

  private keep(chunk: Buffer): void {
    if (this.headLength >= this.keepHeadBytes) return;
    // Copy: the chunk may be a view of a larger read buffer that would otherwise stay alive.
    const part = Buffer.from(chunk.subarray(0, this.keepHeadBytes - this.headLength));
    this.headParts.push(part);
    this.headLength += part.length;
  }
}
