/**
 * The disk as inspection reads it: every read goes through here, so the bytes taken from the
 * image store are counted and bounded, and the many small reads of filesystem metadata (1-4 KiB
 * blocks, often the same ones again) become a few aligned ranged reads served from a small cache.
 */
import type { RandomAccessSource } from '../io/source';
import { SourceRangeError } from '../io/source';

export interface InspectionSourceOptions {
  /** Bytes fetched per underlying read (aligned). Default 64 KiB. */
  chunkBytes?: number;
  /** Chunks kept in memory. Default 256 (16 MiB with the default chunk). */
  cachedChunks?: number;
  /** Refuse to fetch more than this many bytes in all. Default 256 MiB. */
  maxBytesRead?: number;
}

export class ReadBudgetExceededError extends Error {
  constructor(name: string, limit: number) {
    super(`inspecting ${name} would read more than ${limit} bytes; the disk's metadata is unusually large or damaged`);
    this.name = 'ReadBudgetExceededError';
  }
}

export class InspectionSource implements RandomAccessSource {
  readonly size: number;
  readonly name: string;
  /** Bytes fetched from the underlying source. */
  bytesRead = 0;
  /** Underlying reads issued. */
  reads = 0;
  /**
   * The first failed read (or the budget running out). Filesystem libraries report a failed read
   * as a damaged or missing file; inspection checks this so that it never passes off an I/O
   * failure as a finding about the guest.
   */
  failure?: Error;
  private readonly chunkBytes: number;
  private readonly cachedChunks: number;
  private readonly maxBytesRead: number;
  /** Insertion order is recency order: a hit is re-inserted. */
  private readonly cache = new Map<number, Promise<Buffer>>();

  constructor(private readonly inner: RandomAccessSource, options: InspectionSourceOptions = {}) {
    this.size = inner.size;
    this.name = inner.name;
    this.chunkBytes = options.chunkBytes ?? 64 * 1024;
    this.cachedChunks = options.cachedChunks ?? 256;
    this.maxBytesRead = options.maxBytesRead ?? 256 * 1024 * 1024;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new SourceRangeError(this.name, offset, length, this.size);
    }
    const out = Buffer.alloc(length);
    let at = offset;
    while (at < offset + length) {
      const index = Math.floor(at / this.chunkBytes);
      const chunk = await this.chunk(index);
      const chunkStart = index * this.chunkBytes;
      const end = Math.min(offset + length, chunkStart + chunk.length);
      chunk.copy(out, at - offset, at - chunkStart, end - chunkStart);
      at = end;
    }
    return out;
  }

  private chunk(index: number): Promise<Buffer> {
    const cached = this.cache.get(index);
    if (cached) {
      this.cache.delete(index);
      this.cache.set(index, cached);
      return cached;
    }
    const start = index * this.chunkBytes;
    const length = Math.min(this.chunkBytes, this.size - start);
    if (this.bytesRead + length > this.maxBytesRead) {
      this.failure ??= new ReadBudgetExceededError(this.name, this.maxBytesRead);
      throw this.failure;
    }
    this.bytesRead += length;
    this.reads++;
    const pending = this.inner.read(start, length);
    this.cache.set(index, pending);
    // A failed read is not cached: the next caller tries again.
    pending.catch((error: Error) => {
      this.failure ??= error;
      this.cache.delete(index);
    });
    while (this.cache.size > this.cachedChunks) this.cache.delete(this.cache.keys().next().value as number);
    return pending;
  }

  async close(): Promise<void> {
    // The inner source belongs to whoever opened it.
  }
}
