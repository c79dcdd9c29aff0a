/**
 * A random-access byte source: a local file, an S3 object read by ranged GETs, or an ordered
 * list of parts read as one. Readers of disk formats see nothing else.
 */
export interface ByteRange {
  start: number;
  length: number;
}

export interface RandomAccessSource {
  /** Total size in bytes. */
  readonly size: number;
  /** Human-readable name for messages ("disk.vmdk", "s3://bucket/key"). */
  readonly name: string;
  /**
   * Reads exactly `length` bytes at `offset`. Reading past `size` is an error
   * (SourceRangeError); callers bound their reads by `size` first.
   */
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Optional: reads exactly `target.length` bytes at `offset` into `target` (caller-owned memory,
   * e.g. a reused or shared buffer), sparing an allocation per read. Same range rules as read().
   */
  readInto?(offset: number, target: Buffer): Promise<void>;
  /**
   * Optional: where [offset, offset + length) holds data, ascending and disjoint; the rest reads
   * as zeros (a sparse file's holes). Sources that cannot tell leave it out: all is data.
   */
  dataRanges?(offset: number, length: number): Iterable<ByteRange>;
  close(): Promise<void>;
}

export class SourceRangeError extends Error {
  constructor(name: string, offset: number, length: number, size: number) {
    super(`read of ${length} bytes at ${offset} is outside ${name} (${size} bytes)`);
    this.name = 'SourceRangeError';
  }
}
