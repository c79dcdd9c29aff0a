/** The few parts of untyped npm packages that inspection uses. */
declare module 'ext2fs' {
  /** The disk object libext2fs (WASM) calls back into; offsets are within the filesystem. */
  export interface Ext2Disk {
    read(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<unknown>;
    write(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<unknown>;
    discard(offset: number, length: number): Promise<unknown>;
    flush(): Promise<unknown>;
  }
  export interface Ext2Stats {
    size: number;
    mode: number;
    isFile(): boolean;
    isDirectory(): boolean;
    isSymbolicLink(): boolean;
  }
  export interface Ext2FileHandle {
    read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
    stat(): Promise<Ext2Stats>;
    close(): Promise<void>;
  }
  export interface Ext2Fs {
    promises: {
      open(path: string, flags: string | number): Promise<Ext2FileHandle>;
      readdir(path: string): Promise<string[]>;
      stat(path: string): Promise<Ext2Stats>;
      lstat(path: string): Promise<Ext2Stats>;
      readlink(path: string): Promise<string>;
    };
  }
  export function mount(disk: Ext2Disk, offset?: number): Promise<Ext2Fs>;
  export function umount(fs: Ext2Fs): Promise<void>;
}

declare module 'fatfs' {
  export interface FatDriver {
    sectorSize: number;
    numSectors: number;
    readSectors(sector: number, dest: Buffer, callback: (error: Error | null) => void): void;
  }
  export interface FatStats {
    size: number;
    isFile(): boolean;
    isDirectory(): boolean;
  }
  export interface FatFileSystem {
    on(event: 'ready', listener: () => void): void;
    on(event: 'error', listener: (error: Error) => void): void;
    readdir(path: string, callback: (error: Error | null, names?: string[]) => void): void;
    stat(path: string, callback: (error: Error | null, stats?: FatStats) => void): void;
    open(path: string, flags: string, callback: (error: Error | null, fd?: number) => void): void;
    read(fd: number, buffer: Buffer, offset: number, length: number, position: number, callback: (error: Error | null, bytesRead?: number) => void): void;
    close(fd: number, callback: (error: Error | null) => void): void;
  }
  export function createFileSystem(driver: FatDriver, options?: { ro?: boolean; noatime?: boolean }): FatFileSystem;
}
