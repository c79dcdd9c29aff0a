import { open, unlink, type FileHandle } from 'fs/promises';
import { basename } from 'path';
import type { ByteSink } from './sink';

/**
 * A local output file written front to back. Zero runs are skipped rather than written, so the
 * file comes out sparse on filesystems that support holes; finish() sets the final length.
 */
export class FileSink implements ByteSink {
  private position = 0;
  private closed = false;

  private constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
    readonly name: string,
  ) {}

  static async create(path: string, name = basename(path)): Promise<FileSink> {
    // 'w' truncates: a previous, longer file must not leave stale bytes behind the holes we skip.
    return new FileSink(await open(path, 'w'), path, name);
  }

  async write(chunk: Buffer): Promise<void> {
    this.assertOpen();
    let written = 0;
    while (written < chunk.length) {
      const { bytesWritten } = await this.handle.write(chunk, written, chunk.length - written, this.position + written);
      written += bytesWritten;
    }
    this.position += chunk.length;
  }

  async writeZeros(length: number): Promise<void> {
    this.assertOpen();
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`invalid zero run length ${length}`);
    this.position += length;
  }

  async finish(): Promise<{ size: number }> {
    this.assertOpen();
    // Trailing zero runs were never written; truncate extends the file to its true size.
    await this.handle.truncate(this.position);
    await this.handle.sync();
    await this.handle.close();
    this.closed = true;
    return { size: this.position };
  }

  async abort(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.handle.close().catch(() => undefined);
    }
    await unlink(this.path).catch(() => undefined);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`${this.name} is already finished or aborted`);
  }
}
