import { lstat, open, unlink, type FileHandle } from 'fs/promises';
import { basename } from 'path';
import { checkHeadHold, checkHeadPatch, type ByteSink } from './sink';

/**
 * A local output file written front to back. Zero runs are skipped rather than written, so the
 * file comes out sparse on filesystems that support holes; finish() sets the final length.
 *
 * finish() makes the file durable (fsync). Left to the end, that flush is a pause of its own as
 * long as the disk needs for everything written; instead, every FLUSH_BEHIND_BYTES written start
 * a background fdatasync, so the disk writes while the conversion goes on and little is left
 * to flush at the end.
 *
 * A held head (holdHead/patchHead) costs nothing here: a patch is a positional write over bytes
 * already in the file.
 */
const FLUSH_BEHIND_BYTES = 64 * 1024 * 1024;

export class FileSink implements ByteSink {
  private position = 0;
  /** The furthest byte written by writeAt(). */
  private end = 0;
  private closed = false;
  private unflushed = 0;
  private flushing: Promise<void> | undefined;
  private flushFailure: Error | undefined;
  /** Bytes at the start that patchHead() may overwrite; none unless holdHead() was called. */
  private heldHead: number | undefined;

  private constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
    readonly name: string,
    private readonly durable: boolean,
  ) {}

  /**
   * `durable: false` skips the fsync (and the flushing behind): the file is complete for every
   * reader once finish() returns, but may not survive a crash of the machine. That is what
   * `qemu-img convert` gives, and enough for a scratch or intermediate file.
   */
  static async create(path: string, name = basename(path), options: { durable?: boolean } = {}): Promise<FileSink> {
    // A previous file must not leave stale bytes behind the holes we skip. A regular file is
    // replaced rather than truncated: ext4 flushes a file truncated to zero when it is closed
    // (its auto_da_alloc safeguard), which made finish() wait for the disk. 'w' still truncates
    // anything else (a symlink's target, a device).
    const existing = await lstat(path).catch(() => undefined);
    if (existing?.isFile() && existing.size > 0) await unlink(path).catch(() => undefined);
    return new FileSink(await open(path, 'w'), path, name, options.durable ?? true);
  }

  async write(chunk: Buffer): Promise<void> {
    this.assertOpen();
    const at = this.tail();
    this.position = at + chunk.length;
    await this.writeFully(chunk, at);
  }

  /** Positional write: the file is fresh (truncated at create), so whatever is skipped stays a hole. */
  async writeAt(offset: number, chunk: Buffer): Promise<void> {
    this.assertOpen();
    if (!Number.isSafeInteger(offset) || offset < this.position) throw new RangeError(`invalid write offset ${offset}`);
    this.end = Math.max(this.end, offset + chunk.length);
    await this.writeFully(chunk, offset);
  }

  holdHead(length: number): void {
    this.assertOpen();
    checkHeadHold(this.name, length, this.tail(), this.heldHead !== undefined);
    this.heldHead = length;
  }

  async patchHead(offset: number, chunk: Buffer): Promise<void> {
    this.assertOpen();
    checkHeadPatch(this.name, offset, chunk.length, this.heldHead ?? 0, this.tail());
    await this.writeFully(chunk, offset);
  }

  async writeZeros(length: number): Promise<void> {
    this.assertOpen();
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`invalid zero run length ${length}`);
    this.position = this.tail() + length;
  }

  async finish(): Promise<{ size: number }> {
    this.assertOpen();
    // Trailing zero runs were never written; truncate extends the file to its true size.
    const size = this.tail();
    await this.flushing;
    if (this.flushFailure) throw this.flushFailure;
    await this.handle.truncate(size);
    if (this.durable) await this.handle.sync();
    await this.handle.close();
    this.closed = true;
    return { size };
  }

  async abort(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.flushing;
      await this.handle.close().catch(() => undefined);
    }
    await unlink(this.path).catch(() => undefined);
  }

  private async writeFully(chunk: Buffer, offset: number): Promise<void> {
    let written = 0;
    while (written < chunk.length) {
      const { bytesWritten } = await this.handle.write(chunk, written, chunk.length - written, offset + written);
      written += bytesWritten;
    }
    this.flushBehind(chunk.length);
  }

  private flushBehind(written: number): void {
    this.unflushed += written;
    if (!this.durable || this.flushing || this.unflushed < FLUSH_BEHIND_BYTES || this.closed) return;
    this.unflushed = 0;
    this.flushing = this.handle
      .datasync()
      .catch((error: Error) => {
        this.flushFailure ??= error;
      })
      .finally(() => {
        this.flushing = undefined;
      });
  }

  /** Where appended bytes go: after everything written so far, sequentially or by position. */
  private tail(): number {
    return Math.max(this.position, this.end);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`${this.name} is already finished or aborted`);
  }
}
