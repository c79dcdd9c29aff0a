/**
 * ext2/3/4 through libext2fs (the npm package ext2fs, e2fsprogs compiled to WASM). The library
 * calls back into a disk object for every block; ours reads from the inspection source at the
 * partition's offset. libext2fs opens the filesystem read-write and updates an inode's access
 * time when a file is opened, so its writes land in a small in-memory overlay that later reads
 * see: the image itself is never written, and a filesystem that wants to write a lot is refused.
 */
import { mount, umount, type Ext2Disk, type Ext2Fs } from 'ext2fs';
import type { RandomAccessSource } from '../io/source';
import type { FileTree } from './file-tree';

/** Overlay bytes allowed before the disk refuses further writes (a few inode and superblock updates). */
const MAX_OVERLAY_BYTES = 4 * 1024 * 1024;

class OverlayDisk implements Ext2Disk {
  /**
   * libext2fs turns a failed read into EIO, which would read as "no such file"; the cause (the
   * image store failing, the read budget spent) is kept here and rethrown to the caller instead.
   */
  failure?: Error;
  private readonly writes: { offset: number; data: Buffer }[] = [];
  private overlayBytes = 0;

  constructor(
    private readonly source: RandomAccessSource,
    private readonly start: number,
    private readonly size: number,
  ) {}

  async read(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<{ bytesRead: number; buffer: Buffer }> {
    // Reads past the filesystem's end (a damaged block pointer) see zeros rather than the next partition.
    const inside = Math.max(0, Math.min(length, this.size - fileOffset));
    buffer.fill(0, bufferOffset, bufferOffset + length);
    if (inside > 0) {
      try {
        (await this.source.read(this.start + fileOffset, inside)).copy(buffer, bufferOffset);
      } catch (error) {
        this.failure ??= error as Error;
        throw error;
      }
    }
    for (const write of this.writes) {
      const from = Math.max(fileOffset, write.offset);
      const to = Math.min(fileOffset + length, write.offset + write.data.length);
      if (from < to) write.data.copy(buffer, bufferOffset + from - fileOffset, from - write.offset, to - write.offset);
    }
    return { bytesRead: length, buffer };
  }

  async write(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<{ bytesWritten: number }> {
    if (this.overlayBytes + length > MAX_OVERLAY_BYTES) throw new Error('the filesystem reader wrote more than inspection allows');
    this.writes.push({ offset: fileOffset, data: Buffer.from(buffer.subarray(bufferOffset, bufferOffset + length)) });
    this.overlayBytes += length;
    return { bytesWritten: length };
  }

  async discard(): Promise<void> {}
  async flush(): Promise<void> {}
}

export class ExtTree implements FileTree {
  readonly kind = 'ext' as const;
  private constructor(
    private readonly fs: Ext2Fs,
    private readonly disk: OverlayDisk,
  ) {}

  /** Mounts the ext filesystem at [start, start + size) of the source; throws when libext2fs cannot open it. */
  static async open(source: RandomAccessSource, start: number, size: number): Promise<ExtTree> {
    const disk = new OverlayDisk(source, start, size);
    try {
      return new ExtTree(await mount(disk, 0), disk);
    } catch (error) {
      throw disk.failure ?? error;
    }
  }

  /** A failed lookup is "not there" unless reading the disk itself failed. */
  private notFound<T>(): T | undefined {
    if (this.disk.failure) throw this.disk.failure;
    return undefined;
  }

  async kindOf(path: string): Promise<'file' | 'directory' | 'other' | undefined> {
    try {
      const stats = await this.fs.promises.stat(path);
      return stats.isFile() ? 'file' : stats.isDirectory() ? 'directory' : 'other';
    } catch {
      return this.notFound();
    }
  }

  async list(path: string): Promise<string[] | undefined> {
    try {
      return (await this.fs.promises.readdir(path)).filter((name) => name !== '.' && name !== '..');
    } catch {
      return this.notFound();
    }
  }

  async readFile(path: string, maxBytes: number): Promise<Buffer | undefined> {
    let handle;
    try {
      handle = await this.fs.promises.open(path, 'r');
    } catch {
      return this.notFound();
    }
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) return undefined;
      const buffer = Buffer.alloc(Math.min(maxBytes, stats.size));
      let filled = 0;
      while (filled < buffer.length) {
        const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return buffer.subarray(0, filled);
    } catch (error) {
      throw this.disk.failure ?? error;
    } finally {
      await handle.close();
    }
  }

  async close(): Promise<void> {
    await umount(this.fs);
  }
}
