import { createHash, type Hash } from 'crypto';
import type { ByteSink } from './sink';
import { zeroSlices } from './zeros';

/**
 * Passes bytes through to another sink and computes their SHA-256, so an output's checksum is
 * known without reading it back.
 *
 * It deliberately offers neither writeAt nor holdHead/patchHead, whatever the inner sink can do:
 * the hash is of the bytes in the order they stream by, and a write elsewhere would make it the
 * hash of something else. Writers then fall back to their purely sequential layout.
 */
export class HashingSink implements ByteSink {
  private readonly hash: Hash = createHash('sha256');
  private digest?: string;

  constructor(private readonly inner: ByteSink) {}

  get name(): string {
    return this.inner.name;
  }

  async write(chunk: Buffer): Promise<void> {
    this.hash.update(chunk);
    await this.inner.write(chunk);
  }

  async writeZeros(length: number): Promise<void> {
    for (const zeros of zeroSlices(length)) this.hash.update(zeros);
    await this.inner.writeZeros(length);
  }

  async finish(): Promise<{ size: number }> {
    const result = await this.inner.finish();
    this.digest = this.hash.digest('hex');
    return result;
  }

  abort(): Promise<void> {
    return this.inner.abort();
  }

  /** SHA-256 of everything written, lowercase hex; available after finish(). */
  digestHex(): string {
    if (this.digest === undefined) throw new Error('digestHex() is only available after finish()');
    return this.digest;
  }
}
