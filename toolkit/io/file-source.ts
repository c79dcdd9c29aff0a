import { open, type FileHandle } from 'fs/promises';
import { basename } from 'path';
import { fileDataRanges } from './sparse-file';
import { SourceRangeError, type ByteRange, type RandomAccessSource } from './source';

/** A local file read with positional reads; safe for many concurrent reads. */
export class FileSource implements RandomAccessSource {
  private constructor(
    private readonly handle: FileHandle,
    readonly size: number,
    readonly name: string,
  ) {}

  static async open(path: string, name = basename(path)): Promise<FileSource> {
    const handle = await open(path, 'r');
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw new Error(`${path} is not a regular file`);
      return new FileSource(handle, stats.size, name);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, offset, length);
    const buffer = Buffer.allocUnsafe(length);
    await this.fill(offset, buffer);
    return buffer;
  }

  async readInto(offset: number, target: Buffer): Promise<void> {
    checkRange(this, offset, target.length);
    await this.fill(offset, target);
  }

  /** The file's data ranges, its holes left out (lseek SEEK_DATA/SEEK_HOLE; all data where that is unavailable). */
  dataRanges(offset: number, length: number): Iterable<ByteRange> {
    checkRange(this, offset, length);
    return fileDataRanges(this.handle.fd, offset, offset + length);
  }

  private async fill(offset: number, buffer: Buffer): Promise<void> {
    const length = buffer.length;
    let filled = 0;
    // A positional read may return fewer bytes than asked; loop until the range is complete.
    while (filled < length) {
      const { bytesRead } = await this.handle.read(buffer, filled, length - filled, offset + filled);
      if (bytesRead === 0) throw new Error(`${this.name} shrank while being read (at ${offset + filled})`);
      filled += bytesRead;
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/** Every source refuses reads outside [0, size) the same way. */
export function checkRange(source: RandomAccessSource, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > source.size) {
    throw new SourceRangeError(source.name, offset, length, source.size);
  }
}
