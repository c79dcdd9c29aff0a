/**
 * FAT16/FAT32 through the npm package fatfs (read-only: the driver has no writeSectors). FAT
 * names are matched without regard to case, as firmware and Windows do; FAT12 is not read by
 * fatfs (an ESP is FAT16 or FAT32 in practice).
 */
import { createFileSystem, type FatFileSystem, type FatStats } from 'fatfs';
import { promisify } from 'util';
import type { RandomAccessSource } from '../io/source';
import type { FileTree } from './file-tree';

const SECTOR = 512;

export class FatTree implements FileTree {
  readonly kind = 'fat' as const;
  /** A failed disk read, kept so that it is not mistaken for a missing file (fatfs reports both as errors). */
  private failure?: Error;
  private constructor(private readonly fs: FatFileSystem) {}

  static async open(source: RandomAccessSource, start: number, size: number): Promise<FatTree> {
    // eslint-disable-next-line prefer-const -- assigned once the volume is open; the read callback above sees it through the closure
    let tree: FatTree | undefined;
    let early: Error | undefined;
    const fs = createFileSystem(
      {
        sectorSize: SECTOR,
        numSectors: Math.floor(size / SECTOR),
        readSectors(sector, dest, callback) {
          const offset = sector * SECTOR;
          if (offset + dest.length > size) return callback(new Error('read past the end of the FAT volume'));
          source.read(start + offset, dest.length).then(
            (bytes) => {
              bytes.copy(dest);
              callback(null);
            },
            (error: Error) => {
              if (tree) tree.failure ??= error;
              else early ??= error;
              callback(error);
            },
          );
        },
      },
      { ro: true, noatime: true },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        fs.on('ready', resolve);
        fs.on('error', reject);
      });
    } catch (error) {
      throw early ?? error;
    }
    tree = new FatTree(fs);
    return tree;
  }

  async kindOf(path: string): Promise<'file' | 'directory' | 'other' | undefined> {
    const resolved = await this.resolve(path);
    if (resolved === undefined) return undefined;
    const stats = await this.stat(resolved);
    return stats === undefined ? undefined : stats.isDirectory() ? 'directory' : 'file';
  }

  async list(path: string): Promise<string[] | undefined> {
    const resolved = await this.resolve(path);
    return resolved === undefined ? undefined : this.readdir(resolved);
  }

  async readFile(path: string, maxBytes: number): Promise<Buffer | undefined> {
    const resolved = await this.resolve(path);
    if (resolved === undefined) return undefined;
    const stats = await this.stat(resolved);
    if (!stats?.isFile()) return undefined;
    const fd = await promisify(this.fs.open.bind(this.fs))(resolved, 'r');
    try {
      const buffer = Buffer.alloc(Math.min(maxBytes, stats.size));
      const read = promisify(this.fs.read.bind(this.fs)) as (fd: number, b: Buffer, o: number, l: number, p: number) => Promise<number>;
      const bytesRead = buffer.length ? await read(fd!, buffer, 0, buffer.length, 0) : 0;
      return buffer.subarray(0, bytesRead);
    } finally {
      await promisify(this.fs.close.bind(this.fs))(fd!);
    }
  }

  async close(): Promise<void> {}

  /** The path with each component spelled as the directory spells it, or undefined. */
  private async resolve(path: string): Promise<string | undefined> {
    let current = '/';
    for (const part of path.split(/[\\/]+/).filter(Boolean)) {
      const names = await this.readdir(current);
      const match = names?.find((name) => name.toUpperCase() === part.toUpperCase());
      if (!match) return undefined;
      current = current === '/' ? `/${match}` : `${current}/${match}`;
    }
    return current;
  }

  private readdir(path: string): Promise<string[] | undefined> {
    return new Promise((resolve, reject) => this.fs.readdir(path, (error, names) => (this.failure ? reject(this.failure) : resolve(error ? undefined : names))));
  }

  private stat(path: string): Promise<FatStats | undefined> {
    return new Promise((resolve, reject) => this.fs.stat(path, (error, stats) => (this.failure ? reject(this.failure) : resolve(error ? undefined : stats))));
  }
}
