/**
 * Test helper: small guest disks built by the real tools (sfdisk, mkfs.ext4 -d, mkfs.vfat +
 * mcopy, mkfs.xfs, mkntfs + ntfs-3g, cryptsetup, mkswap), from directory trees shaped like the
 * systems we import. Nothing is mounted through the kernel: filesystems are built in files and
 * copied into the disk at their partition's offset (NTFS trees are filled through ntfs-3g, a
 * FUSE filesystem in user space, because ntfscp cannot make directories).
 */
import { execFileSync } from 'child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, writeFileSync, writeSync, readFileSync, ftruncateSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { dirname, join } from 'path';

const PATH = `${process.env.PATH}:/usr/sbin:/sbin`;
const MiB = 1024 * 1024;

/** Debian packages of the tools these builders run, named in the error when one is missing. */
export const GUEST_IMAGE_PACKAGES: Record<string, string> = {
  sfdisk: 'fdisk',
  'mkfs.ext4': 'e2fsprogs',
  'mkfs.ext2': 'e2fsprogs',
  'mkfs.ext3': 'e2fsprogs',
  'mkfs.vfat': 'dosfstools',
  mmd: 'mtools',
  mcopy: 'mtools',
  'mkfs.xfs': 'xfsprogs',
  mkntfs: 'ntfs-3g',
  'ntfs-3g': 'ntfs-3g',
  fusermount: 'fuse3',
  mkswap: 'util-linux',
  cryptsetup: 'cryptsetup-bin',
  'qemu-img': 'qemu-utils',
};

function run(tool: string, args: string[], input?: string): string {
  try {
    return execFileSync(tool, args, { env: { ...process.env, PATH, MTOOLS_SKIP_CHECK: '1' }, input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') {
      throw new Error(`${tool} is not installed; the guest test disks need it: apt-get install ${GUEST_IMAGE_PACKAGES[tool] ?? tool}`);
    }
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`${tool} ${args.join(' ')} failed: ${stderr || (error as Error).message}`);
  }
}

export type Tree = Record<string, string | Buffer>;

export interface Workspace {
  dir: string;
  path(name: string): string;
  cleanup(): void;
}

export function workspace(prefix = 'guest-'): Workspace {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function writeTree(root: string, tree: Tree): void {
  mkdirSync(root, { recursive: true });
  for (const [path, content] of Object.entries(tree)) {
    const target = join(root, path);
    if (path.endsWith('/')) {
      mkdirSync(target, { recursive: true });
      continue;
    }
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, content);
  }
}

// ---- kernels ---------------------------------------------------------------------------------

/** The start of an x86 bzImage: boot protocol 2.15, 64-bit entry flag as asked. */
export function fakeBzImage(bits: 32 | 64 = 64): Buffer {
  const image = Buffer.alloc(8192, 0x90);
  image.write('MZ', 0, 'latin1');
  image.writeUInt32LE(0, 0x3c); // no PE header in this fake
  image.write('HdrS', 0x202, 'latin1');
  image.writeUInt16LE(0x020f, 0x206);
  image[0x236] = bits === 64 ? 0x7f : 0x00;
  return image;
}

/** An arm64 Image header ("ARM\x64" at 0x38). */
export function fakeArm64Image(): Buffer {
  const image = Buffer.alloc(8192);
  image.writeUInt32LE(0x644d5241, 0x38);
  return image;
}

/** A PE file's header with the given COFF machine (0x8664 x86-64, 0xaa64 arm64). */
export function fakeEfiLoader(machine = 0x8664): Buffer {
  const image = Buffer.alloc(4096);
  image.write('MZ', 0, 'latin1');
  image.writeUInt32LE(0x80, 0x3c);
  image.write('PE\0\0', 0x80, 'latin1');
  image.writeUInt16LE(machine, 0x84);
  return image;
}

// ---- guest trees -----------------------------------------------------------------------------

export const UUIDS = {
  debianRoot: '1b6f4a1e-6f0b-4e55-9d8c-1a2b3c4d5e01',
  ubuntuRoot: '2b6f4a1e-6f0b-4e55-9d8c-1a2b3c4d5e02',
  rhelRoot: '3b6f4a1e-6f0b-4e55-9d8c-1a2b3c4d5e03',
  rhelBoot: '3b6f4a1e-6f0b-4e55-9d8c-1a2b3c4d5e13',
  alpineRoot: '4b6f4a1e-6f0b-4e55-9d8c-1a2b3c4d5e04',
  data: '5b6f4a1e-6f0b-4e55-9d8c-1a2b3c4d5e05',
  espSerial: 'ABCD1234',
};

export function debianTree(rootUuid = UUIDS.debianRoot, extraFstab = ''): Tree {
  return {
    'etc/os-release':
      'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n',
    'etc/fstab': `# /etc/fstab: static file system information.\nUUID=${rootUuid} / ext4 errors=remount-ro 0 1\n${extraFstab}`,
    'etc/hostname': 'debian\n',
    'boot/vmlinuz-6.1.0-18-amd64': fakeBzImage(64),
    'boot/initrd.img-6.1.0-18-amd64': Buffer.alloc(4096, 1),
    'boot/config-6.1.0-18-amd64': 'CONFIG_X86_64=y\n',
    'boot/grub/grub.cfg': grubCfg('Debian GNU/Linux', '/boot/vmlinuz-6.1.0-18-amd64', rootUuid),
    'usr/bin/': '',
    'var/log/': '',
  };
}

export function ubuntuTree(rootUuid = UUIDS.ubuntuRoot): Tree {
  return {
    'usr/lib/os-release':
      'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nVERSION="22.04.4 LTS (Jammy Jellyfish)"\nID=ubuntu\nID_LIKE=debian\n',
    'etc/fstab': `LABEL=cloudimg-rootfs / ext4 discard,errors=remount-ro 0 1\nLABEL=UEFI /boot/efi vfat umask=0077 0 1\n`,
    'boot/vmlinuz-5.15.0-97-generic': fakeBzImage(64),
    'boot/initrd.img-5.15.0-97-generic': Buffer.alloc(4096, 2),
    'boot/grub/grub.cfg': grubCfg('Ubuntu', '/boot/vmlinuz-5.15.0-97-generic', rootUuid),
    'boot/efi/': '',
  };
}

export function rhelTree(rootUuid = UUIDS.rhelRoot, bootUuid = UUIDS.rhelBoot): Tree {
  return {
    'etc/os-release': 'NAME="Rocky Linux"\nVERSION="9.3 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\nPRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\n',
    'etc/redhat-release': 'Rocky Linux release 9.3 (Blue Onyx)\n',
    'etc/fstab': `UUID=${rootUuid} / ext4 defaults 0 0\nUUID=${bootUuid} /boot ext4 defaults 1 2\n`,
    'boot/': '',
  };
}

/** The separate /boot filesystem of the RHEL-like disk: kernels at its root, grub2 config. */
export function rhelBootTree(rootUuid = UUIDS.rhelRoot): Tree {
  return {
    'vmlinuz-5.14.0-362.8.1.el9_3.x86_64': fakeBzImage(64),
    'initramfs-5.14.0-362.8.1.el9_3.x86_64.img': Buffer.alloc(4096, 3),
    'grub2/grub.cfg': grubCfg('Rocky Linux', '/vmlinuz-5.14.0-362.8.1.el9_3.x86_64', rootUuid),
  };
}

export function alpineTree(rootUuid = UUIDS.alpineRoot): Tree {
  return {
    'etc/os-release': 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n',
    'etc/alpine-release': '3.19.1\n',
    'etc/fstab': `UUID=${rootUuid}\t/\text4\trw,relatime 0 1\n/dev/cdrom\t/media/cdrom\tiso9660\tnoauto,ro 0 0\n`,
    'boot/vmlinuz-virt': fakeBzImage(64),
    'boot/initramfs-virt': Buffer.alloc(4096, 4),
    'boot/extlinux.conf': `DEFAULT virt\nLABEL virt\n  LINUX vmlinuz-virt\n  INITRD initramfs-virt\n  APPEND root=UUID=${rootUuid} modules=ext4\n`,
  };
}

function grubCfg(name: string, kernel: string, rootUuid: string): string {
  return [
    'set default=0',
    `menuentry '${name}' --class gnu-linux {`,
    `\tsearch --no-floppy --fs-uuid --set=root ${rootUuid}`,
    `\tlinux ${kernel} root=UUID=${rootUuid} ro quiet`,
    `\tinitrd ${kernel.replace('vmlinuz', 'initrd.img')}`,
    '}',
    '',
  ].join('\n');
}

// ---- filesystems in files --------------------------------------------------------------------

export type FilesystemSpec =
  | { kind: 'ext4' | 'ext2'; tree?: Tree; label?: string; uuid?: string }
  | { kind: 'vfat'; tree?: Tree; label?: string; serial?: string }
  | { kind: 'ntfs'; tree?: Tree; label?: string }
  | { kind: 'xfs'; label?: string; uuid?: string }
  | { kind: 'swap'; label?: string; uuid?: string }
  | { kind: 'luks'; label?: string }
  | { kind: 'raw'; bytes: Buffer };

/** Builds a filesystem of `sizeMiB` in a new file; returns its path. */
export function makeFilesystem(ws: Workspace, name: string, sizeMiB: number, spec: FilesystemSpec): string {
  const file = ws.path(`${name}.fs`);
  const fd = openSync(file, 'w');
  ftruncateSync(fd, sizeMiB * MiB);
  closeSync(fd);
  switch (spec.kind) {
    case 'ext4':
    case 'ext2': {
      const args = ['-q', '-F', '-t', spec.kind, '-b', '4096'];
      if (spec.label) args.push('-L', spec.label);
      if (spec.uuid) args.push('-U', spec.uuid);
      if (spec.tree) {
        const dir = ws.path(`${name}.tree`);
        writeTree(dir, spec.tree);
        args.push('-d', dir);
      }
      run('mkfs.ext4', [...args, file]);
      break;
    }
    case 'vfat': {
      run('mkfs.vfat', ['-F', '16', '-n', spec.label ?? 'NO NAME', ...(spec.serial ? ['-i', spec.serial] : []), file]);
      for (const [path, content] of Object.entries(spec.tree ?? {})) {
        const parts = path.split('/').filter(Boolean);
        for (let i = 1; i < parts.length + (path.endsWith('/') ? 1 : 0); i++) {
          try {
            run('mmd', ['-i', file, `::/${parts.slice(0, i).join('/')}`]);
          } catch {
            // already there
          }
        }
        if (path.endsWith('/')) continue;
        const local = ws.path(`${name}.tmp`);
        writeFileSync(local, content);
        run('mcopy', ['-o', '-i', file, local, `::/${parts.join('/')}`]);
      }
      break;
    }
    case 'ntfs': {
      run('mkntfs', ['-q', '-F', '-Q', ...(spec.label ? ['-L', spec.label] : []), file]);
      if (spec.tree && Object.keys(spec.tree).length) {
        const mnt = ws.path(`${name}.mnt`);
        mkdirSync(mnt, { recursive: true });
        run('ntfs-3g', [file, mnt]);
        try {
          writeTree(mnt, spec.tree);
        } finally {
          run('fusermount', ['-u', mnt]);
        }
      }
      break;
    }
    case 'xfs':
      // XFS wants at least 300 MiB; the file is sparse, so that costs nothing.
      run('mkfs.xfs', ['-q', '-f', ...(spec.label ? ['-L', spec.label] : []), ...(spec.uuid ? ['-m', `uuid=${spec.uuid}`] : []), file]);
      break;
    case 'swap':
      run('mkswap', [...(spec.label ? ['-L', spec.label] : []), ...(spec.uuid ? ['-U', spec.uuid] : []), file]);
      break;
    case 'luks':
      run('cryptsetup', ['luksFormat', '--batch-mode', '--type', 'luks2', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', ...(spec.label ? ['--label', spec.label] : []), '--key-file', '-', file], 'test passphrase');
      break;
    case 'raw': {
      const out = openSync(file, 'r+');
      writeSync(out, spec.bytes, 0, spec.bytes.length, 0);
      closeSync(out);
      break;
    }
  }
  return file;
}

// ---- disks -----------------------------------------------------------------------------------

export interface PartitionSpec {
  sizeMiB: number;
  /** sfdisk type: 'L' Linux, 'U' EFI system, 'S' swap, '7' NTFS (MBR), or a GUID/byte. */
  type?: string;
  bootable?: boolean;
  fs?: FilesystemSpec;
  name?: string;
}

export interface DiskSpec {
  table: 'mbr' | 'gpt';
  partitions: PartitionSpec[];
  /** MBR only: logical partitions, in an extended partition after the primaries (1 MiB before each for its EBR). */
  logical?: PartitionSpec[];
  /** Disk size; default: the partitions plus 2 MiB. */
  sizeMiB?: number;
  /** Write GRUB-like boot code into the MBR's first 440 bytes. */
  biosBootCode?: boolean | Buffer;
}

/** Builds the disk in `ws` as a raw file; partitions start at 1 MiB, one after another. */
export function makeDisk(ws: Workspace, name: string, spec: DiskSpec): string {
  const file = ws.path(`${name}.raw`);
  const logical = spec.logical ?? [];
  const used = spec.partitions.reduce((sum, p) => sum + p.sizeMiB, 0) + logical.reduce((sum, p) => sum + p.sizeMiB + 1, 0);
  const fd = openSync(file, 'w');
  ftruncateSync(fd, (spec.sizeMiB ?? used + 2) * MiB);
  closeSync(fd);
  const lines = [`label: ${spec.table === 'mbr' ? 'dos' : 'gpt'}`, 'unit: sectors', ''];
  let startMiB = 1;
  const placed: { spec: PartitionSpec; startMiB: number }[] = [];
  const line = (p: PartitionSpec, start: number): string => {
    const fields = [`start=${start * 2048}`, `size=${p.sizeMiB * 2048}`, `type=${p.type ?? 'L'}`];
    if (p.bootable) fields.push('bootable');
    if (p.name && spec.table === 'gpt') fields.push(`name="${p.name}"`);
    return fields.join(', ');
  };
  for (const p of spec.partitions) {
    placed.push({ spec: p, startMiB });
    lines.push(line(p, startMiB));
    startMiB += p.sizeMiB;
  }
  if (logical.length) {
    const extendedMiB = logical.reduce((sum, p) => sum + p.sizeMiB + 1, 0);
    lines.push(`start=${startMiB * 2048}, size=${extendedMiB * 2048}, type=5`);
    for (const p of logical) {
      startMiB += 1;
      placed.push({ spec: p, startMiB });
      lines.push(line(p, startMiB));
      startMiB += p.sizeMiB;
    }
  }
  run('sfdisk', ['--no-reread', '--no-tell-kernel', '-q', file], lines.join('\n') + '\n');
  placed.forEach(({ spec: p, startMiB: start }, i) => {
    if (!p.fs) return;
    if (p.fs.kind === 'ext4' || p.fs.kind === 'ext2') {
      // Built in place: no copy of a large, mostly empty filesystem.
      makeExtFilesystem(ws, `${name}-p${i + 1}`, file, start * MiB, p.sizeMiB, p.fs);
      return;
    }
    const fs = makeFilesystem(ws, `${name}-p${i + 1}`, p.sizeMiB, p.fs);
    copyInto(fs, file, start * MiB);
    rmSync(fs);
  });
  if (spec.biosBootCode) writeAt(file, 0, Buffer.isBuffer(spec.biosBootCode) ? spec.biosBootCode : grubBootCode());
  return file;
}

/** mkfs.ext4 straight into `file` at `offset` (mke2fs -E offset=). */
export function makeExtFilesystem(ws: Workspace, name: string, file: string, offset: number, sizeMiB: number, spec: Extract<FilesystemSpec, { kind: 'ext4' | 'ext2' }>): void {
  const args = ['-q', '-F', '-t', spec.kind, '-b', '4096', '-E', `offset=${offset},lazy_itable_init=1`];
  if (spec.label) args.push('-L', spec.label);
  if (spec.uuid) args.push('-U', spec.uuid);
  if (spec.tree) {
    const dir = ws.path(`${name}.tree`);
    writeTree(dir, spec.tree);
    args.push('-d', dir);
  }
  run('mkfs.ext4', [...args, file, `${sizeMiB}M`]);
}

/** A Windows MBR's code area: code bytes and its messages. */
export function windowsBootCode(): Buffer {
  const code = Buffer.alloc(440, 0x90);
  code[0] = 0x33;
  code[1] = 0xc0;
  code.write('Invalid partition table\0Error loading operating system\0Missing operating system', 0x163, 'latin1');
  return code;
}

/** Something shaped like GRUB's boot.img code area: a jump, code bytes, and its "GRUB " message. */
export function grubBootCode(): Buffer {
  const code = Buffer.alloc(440, 0x90);
  code[0] = 0xeb;
  code[1] = 0x63;
  code.write('GRUB \0Geom\0Hard Disk\0Read\0 Error\r\n', 0x180, 'latin1');
  return code;
}

/** Copies a file's data into another at an offset, leaving holes as holes (dd conv=sparse). */
function copyInto(from: string, to: string, offset: number): void {
  run('dd', [`if=${from}`, `of=${to}`, 'bs=1M', `seek=${offset / MiB}`, 'conv=notrunc,sparse', 'status=none']);
}

export function writeAt(file: string, offset: number, bytes: Buffer): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
}

export function readAt(file: string, offset: number, length: number): Buffer {
  return readFileSync(file).subarray(offset, offset + length);
}

// ---- a system disk for pipeline tests ---------------------------------------------------------

export interface SystemDiskOptions {
  /** File name in `dir`; default disk.raw. */
  name?: string;
  /** x86_64 (default): BIOS boot code and \EFI\BOOT\BOOTX64.EFI; arm64: UEFI only, BOOTAA64.EFI and an arm64 kernel. */
  architecture?: 'x86_64' | 'arm64';
  /** Seeded bytes after the last partition, so the size is not a multiple of a MiB; default 12345. */
  tailBytes?: number;
}

/**
 * A disk the validate stage accepts as an image or an instance's root, for the suites that test
 * the rest of the pipeline: MBR, an EFI system partition with the fallback loader, a
 * Debian-shaped ext4 root with a kernel of the architecture and some incompressible data. An
 * x86_64 disk also has GRUB-like boot code in its MBR, so it boots with legacy BIOS or UEFI and
 * any requested BootMode fits.
 */
export function makeSystemDisk(dir: string, options: SystemDiskOptions = {}): { path: string; size: number } {
  const { name = 'disk.raw', architecture = 'x86_64', tailBytes = 12345 } = options;
  const ws: Workspace = { dir, path: (file) => join(dir, file), cleanup: () => undefined };
  const arm = architecture === 'arm64';
  const root: Tree = { ...debianTree(), 'var/lib/random.bin': seededBytes(2 * MiB + 777, 7) };
  if (arm) {
    for (const key of Object.keys(root)) if (key.startsWith('boot/')) delete root[key];
    root['boot/vmlinuz-6.1.0-18-arm64'] = fakeArm64Image();
    root['boot/initrd.img-6.1.0-18-arm64'] = Buffer.alloc(4096, 1);
    root['boot/grub/grub.cfg'] = grubCfg('Debian GNU/Linux', '/boot/vmlinuz-6.1.0-18-arm64', UUIDS.debianRoot);
  }
  const loader: Tree = arm ? { 'EFI/BOOT/BOOTAA64.EFI': fakeEfiLoader(0xaa64) } : { 'EFI/BOOT/BOOTX64.EFI': fakeEfiLoader() };
  const file = makeDisk(ws, name.replace(/\.raw$/, ''), {
    table: 'mbr',
    biosBootCode: !arm,
    partitions: [
      { sizeMiB: 16, type: 'ef', fs: { kind: 'vfat', label: 'EFI', tree: loader } },
      { sizeMiB: 40, bootable: true, fs: { kind: 'ext4', uuid: UUIDS.debianRoot, tree: root } },
    ],
  });
  const size = (16 + 40 + 2) * MiB + tailBytes;
  if (tailBytes > 0) writeAt(file, size - tailBytes, seededBytes(tailBytes, 13));
  const path = join(dir, name);
  if (file !== path) execFileSync('mv', [file, path]);
  return { path, size };
}

/** Reproducible incompressible bytes. */
function seededBytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let state = seed >>> 0;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state >>> 24;
  }
  return out;
}
