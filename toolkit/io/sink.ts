/**
 * A sequential byte sink: local file or S3 multipart upload. Writers of disk formats produce
 * bytes in order; the sink may upload parts in parallel and complete them out of order.
 */
export interface ByteSink {
  readonly name: string;
  /** Appends bytes. Resolves when the sink can take more (backpressure) and is done with `chunk` (the caller may reuse it). */
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
  /**
   * Optional, with patchHead (a sink offers both or neither; see canPatchHead): keeps the first
   * `length` bytes of the output patchable until finish(). Must be called before any byte is
   * written. This is for formats whose tables precede the data they describe (a VHD's BAT): the
   * writer appends a placeholder table, streams the data, then patches the table in. A file
   * patches in place; an S3 upload holds back its first part (in memory) until finish().
   */
  holdHead?(length: number): void;
  /**
   * Overwrites bytes already written, inside the head held by holdHead(): `offset + chunk.length`
   * may exceed neither the held length nor the bytes written so far. The sink is done with
   * `chunk` when the promise resolves.
   */
  patchHead?(offset: number, chunk: Buffer): Promise<void>;
}

export type HeadPatchingSink = ByteSink & Required<Pick<ByteSink, 'holdHead' | 'patchHead'>>;

/**
 * Whether `sink` can patch its head. A wrapper that sees every byte go by (a hash of the output)
 * must not offer it, since a patch would change bytes it has already accounted for.
 */
export function canPatchHead(sink: ByteSink): sink is HeadPatchingSink {
  return typeof sink.holdHead === 'function' && typeof sink.patchHead === 'function';
}

/** The rule of holdHead, for sinks to share: called once, before any byte is written. */
export function checkHeadHold(name: string, length: number, written: number, alreadyHeld: boolean): void {
  if (alreadyHeld || written > 0) throw new Error(`${name}: holdHead() must be called once, before any byte is written`);
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`${name}: invalid head length ${length}`);
}

/** The rule of patchHead, for sinks to share: the patch lies inside the held head and inside what was written. */
export function checkHeadPatch(name: string, offset: number, length: number, held: number, written: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > Math.min(held, written)) {
    throw new RangeError(`${name}: cannot patch ${length} bytes at ${offset}: the held head is ${held} bytes, ${written} are written`);
  }
}
