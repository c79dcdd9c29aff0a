/**
 * A sequential byte sink: local file or S3 multipart upload. Writers of disk formats produce
 * bytes in order; the sink may upload parts in parallel and complete them out of order.
 */
export interface ByteSink {
  readonly name: string;
  /** Appends bytes. Resolves when the sink can take more (backpressure). */
  write(chunk: Buffer): Promise<void>;
  /** Appends `length` zero bytes without the caller allocating them. */
  writeZeros(length: number): Promise<void>;
  /** Flushes and commits; returns the number of bytes written. */
  finish(): Promise<{ size: number }>;
  /** Discards everything written (aborts the multipart upload, removes the file). */
  abort(): Promise<void>;
  /**
   * Optional, for sinks that can seek (a local file): writes `chunk` at byte `offset`, in any
   * order and several at once, never before bytes already appended by write()/writeZeros(). The
   * sink's end moves to at least `offset + chunk.length`; bytes never written read as zeros.
   * The sink is done with `chunk` when the promise resolves (the caller may reuse it).
   */
  writeAt?(offset: number, chunk: Buffer): Promise<void>;
}
