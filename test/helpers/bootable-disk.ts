/**
 * A system disk that passes the validate stage's guest checks, for imports of images and
 * instances: MBR with GRUB-like boot code, one bootable ext4 partition holding a Debian-shaped
 * root (x86_64 kernel, grub.cfg, fstab), then an odd-sized tail of random bytes after the
 * partition so conversions still meet a size that is no multiple of any cluster, grain or sector.
 */
import { appendFileSync, statSync } from 'fs';
import { join } from 'path';
import { seededBytes, type MadeDisk } from './disk-corpus';
import { UUIDS, debianTree, makeDisk } from './guest-images';

export function makeBootableDebianDisk(dir: string, name = 'debian'): MadeDisk {
  const path = makeDisk({ dir, path: (file) => join(dir, file), cleanup: () => undefined }, name, {
    table: 'mbr',
    biosBootCode: true,
    partitions: [{ sizeMiB: 40, bootable: true, fs: { kind: 'ext4', uuid: UUIDS.debianRoot, tree: debianTree() } }],
  });
  appendFileSync(path, seededBytes(3 * 1024 * 1024 + 12345, 17));
  return { path, size: statSync(path).size };
}
