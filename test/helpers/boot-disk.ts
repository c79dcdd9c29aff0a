/**
 * Test helper: a small disk that really boots Linux under qemu-system-x86_64 (SeaBIOS). Built
 * from Debian packages, nothing mounted:
 *   - the MBR's boot code is SYSLINUX's mbr.bin (syslinux-common); partition 1 is FAT16, active;
 *   - `syslinux --install` (syslinux, through mtools) puts its loader into the FAT filesystem;
 *   - the kernel is the host's /boot/vmlinuz-* (linux-image-cloud-amd64), with an initramfs
 *     (cpio + gzip) holding a static busybox (busybox-static) and an /init that prints
 *     BOOT_MARKER on the serial console and powers off.
 * The kernel runs /init from the initramfs, so no disk driver or root filesystem is needed.
 */
import { execFileSync } from 'child_process';
import { chmodSync, closeSync, copyFileSync, ftruncateSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync } from 'fs';
import { join } from 'path';
import { UUIDS, debianTree, makeExtFilesystem, writeAt, type Workspace } from './guest-images';

const PATH = `${process.env.PATH}:/usr/sbin:/sbin`;
const MiB = 1024 * 1024;

/** What the guest's /init prints on ttyS0. */
export const BOOT_MARKER = 'IMAGING-BOOT-CHECK: init reached';

/** Debian packages the boot disk is made from (scripts/test-setup.sh installs them). */
export const BOOT_DISK_PACKAGES = ['linux-image-cloud-amd64', 'busybox-static', 'syslinux', 'syslinux-common', 'mtools', 'dosfstools', 'cpio'];

const SYSLINUX_MBR = '/usr/lib/syslinux/mbr/mbr.bin';
const BUSYBOX = '/bin/busybox';

function run(tool: string, args: string[], options: { cwd?: string } = {}): Buffer {
  try {
    return execFileSync(tool, args, { env: { ...process.env, PATH, MTOOLS_SKIP_CHECK: '1' }, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * MiB, ...options });
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') throw new Error(`${tool} is not installed; the boot test disk needs: apt-get install ${BOOT_DISK_PACKAGES.join(' ')}`);
    throw new Error(`${tool} ${args.join(' ')} failed: ${(error as { stderr?: Buffer }).stderr?.toString() || (error as Error).message}`);
  }
}

/** The newest kernel in /boot (a Debian linux-image package's vmlinuz). */
export function hostKernel(): string {
  const kernels = readdirSync('/boot').filter((name) => name.startsWith('vmlinuz-')).sort();
  if (kernels.length === 0) throw new Error(`no /boot/vmlinuz-*; the boot test disk needs a kernel: apt-get install ${BOOT_DISK_PACKAGES.join(' ')}`);
  return join('/boot', kernels[kernels.length - 1]);
}

/** An initramfs (gzipped newc cpio) whose /init prints BOOT_MARKER and powers off. */
function makeInitramfs(ws: Workspace, name: string): string {
  const root = ws.path(`${name}.initramfs`);
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'dev'), { recursive: true });
  copyFileSync(BUSYBOX, join(root, 'bin/busybox'));
  chmodSync(join(root, 'bin/busybox'), 0o755);
  writeFileSync(
    join(root, 'init'),
    ['#!/bin/busybox sh', `/bin/busybox echo "${BOOT_MARKER}"`, '/bin/busybox sleep 1', '/bin/busybox poweroff -f', ''].join('\n'),
    { mode: 0o755 },
  );
  const out = ws.path(`${name}.initrd.gz`);
  // cpio reads the file list from stdin; gzip -1 is enough (the kernel unpacks gzip built in).
  run('sh', ['-c', `find . | cpio -o -H newc --quiet | gzip -1 > '${out}'`], { cwd: root });
  return out;
}

export interface LinuxBootDiskOptions {
  /**
   * Add a Debian-shaped ext4 root as partition 2 (its kernel a stand-in that is never booted), so
   * that the static validation accepts the disk as an image or instance through the pipeline.
   */
  debianRoot?: boolean;
}

/** Builds the disk; returns its path. About 40 MiB (80 with the Debian root), most of it the kernel. */
export function makeLinuxBootDisk(ws: Workspace, name = 'linux-boot', options: LinuxBootDiskOptions = {}): string {
  const kernel = hostKernel();
  const initrd = makeInitramfs(ws, name);
  const fsMiB = 38;
  const fs = ws.path(`${name}.fat`);
  let fd = openSync(fs, 'w');
  ftruncateSync(fd, fsMiB * MiB);
  closeSync(fd);
  // -h: the partition starts at sector 2048 (the boot sector finds its loader relative to it).
  run('mkfs.vfat', ['-F', '16', '-h', '2048', '-n', 'BOOT', fs]);
  run('syslinux', ['--install', fs]);
  const cfg = ws.path(`${name}.syslinux.cfg`);
  writeFileSync(cfg, ['SERIAL 0 115200', 'DEFAULT linux', 'PROMPT 0', 'TIMEOUT 0', 'LABEL linux', '  LINUX /vmlinuz', '  INITRD /initrd.gz', '  APPEND console=ttyS0,115200 panic=-1', ''].join('\n'));
  run('mcopy', ['-o', '-i', fs, kernel, '::/vmlinuz']);
  run('mcopy', ['-o', '-i', fs, initrd, '::/initrd.gz']);
  run('mcopy', ['-o', '-i', fs, cfg, '::/syslinux.cfg']);

  const rootMiB = options.debianRoot ? 40 : 0;
  const disk = ws.path(`${name}.raw`);
  fd = openSync(disk, 'w');
  ftruncateSync(fd, (fsMiB + rootMiB + 2) * MiB);
  closeSync(fd);
  const root = rootMiB ? `start=${(fsMiB + 1) * 2048}, size=${rootMiB * 2048}, type=83\n` : '';
  execFileSync('sfdisk', ['--no-reread', '--no-tell-kernel', '-q', disk], {
    env: { ...process.env, PATH },
    input: `label: dos\nunit: sectors\n\nstart=2048, size=${fsMiB * 2048}, type=6, bootable\n${root}`,
  });
  run('dd', [`if=${fs}`, `of=${disk}`, 'bs=1M', 'seek=1', 'conv=notrunc,sparse', 'status=none']);
  if (rootMiB) makeExtFilesystem(ws, `${name}-root`, disk, (fsMiB + 1) * MiB, rootMiB, { kind: 'ext4', uuid: UUIDS.debianRoot, tree: debianTree() });
  writeAt(disk, 0, readFileSync(SYSLINUX_MBR).subarray(0, 440));
  return disk;
}
