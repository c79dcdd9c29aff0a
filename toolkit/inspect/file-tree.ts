/**
 * A guest filesystem as inspection sees it: does a path exist, what does a directory list, and
 * the first bytes of a file. Each filesystem reader (ext via libext2fs, FAT via fatfs, NTFS by
 * its MFT) answers these and nothing more; paths are absolute, '/'-separated, in the guest.
 */
export interface FileTree {
  readonly kind: 'ext' | 'fat' | 'ntfs';
  /** 'file' | 'directory' | 'other', or undefined when the path does not exist. */
  kindOf(path: string): Promise<'file' | 'directory' | 'other' | undefined>;
  /** Names in a directory (no '.' or '..'), or undefined when it is not a directory. */
  list(path: string): Promise<string[] | undefined>;
  /** At most `maxBytes` from the start of a file, or undefined when it is not a file. */
  readFile(path: string, maxBytes: number): Promise<Buffer | undefined>;
  close(): Promise<void>;
}

/** Bytes of a text file inspection reads at most (os-release, fstab, grub.cfg). */
export const MAX_TEXT_FILE_BYTES = 256 * 1024;
