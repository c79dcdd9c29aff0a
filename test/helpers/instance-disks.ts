/**
 * The three disks of the multi-disk ImportInstance suites, each with the raw bytes a volume made
 * from it must hold: DiskImage.1 a bootable streamOptimized VMDK (Debian-shaped, x86_64 kernel,
 * GRUB-like boot code, so the validate stage accepts it as an instance's root), DiskImage.2 an
 * odd-sized RAW data disk, DiskImage.3 a VHD of a disk with a hole in the middle.
 */
import { execFileSync } from 'child_process';
import { readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { qemuToRaw, seededBytes } from './disk-corpus';
import { UUIDS, debianTree, makeDisk } from './guest-images';

export interface InstanceDisk {
  format: 'VMDK' | 'RAW' | 'VHD';
  path: string;
  /** What `qemu-img convert -O raw` makes of it (a RAW disk is its own reference). */
  reference: Buffer;
}

/** Makes the three disks in `dir`; `seed` varies the data disks' bytes between suites. */
export function makeInstanceDisks(dir: string, seed: number): InstanceDisk[] {
  const boot = makeDisk({ dir, path: (name) => join(dir, name), cleanup: () => undefined }, 'boot', {
    table: 'mbr',
    biosBootCode: true,
    partitions: [{ sizeMiB: 24, bootable: true, fs: { kind: 'ext4', uuid: UUIDS.debianRoot, tree: debianTree() } }],
  });
  const vmdk = join(dir, 'boot.vmdk');
  execFileSync('qemu-img', ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', boot, vmdk]);
  const data = join(dir, 'data.raw');
  writeFileSync(data, seededBytes(3 * 1024 * 1024 + 1234, seed));
  const logsRaw = join(dir, 'logs.raw');
  writeFileSync(logsRaw, Buffer.concat([seededBytes(2 * 1024 * 1024, seed + 1), Buffer.alloc(2 * 1024 * 1024), seededBytes(512 * 1024, seed + 2)]));
  const vhd = join(dir, 'logs.vhd');
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', logsRaw, vhd]);
  return [
    { format: 'VMDK', path: vmdk, reference: qemuToRaw(vmdk, join(dir, 'boot.ref.raw')) },
    // A raw disk is its own reference: qemu-img would pad its odd-sized tail to a whole sector.
    { format: 'RAW', path: data, reference: readFileSync(data) },
    { format: 'VHD', path: vhd, reference: qemuToRaw(vhd, join(dir, 'logs.ref.raw')) },
  ];
}
