/**
 * Filesystem identification by superblock, on filesystems made by their own mkfs where one is
 * installed; partition-table scanning beyond the head (GPT backup, a grown disk); kernel
 * architecture from real header layouts.
 */
import { execFileSync } from 'child_process';
import { openSync, closeSync, ftruncateSync, readFileSync, truncateSync, writeFileSync } from 'fs';
import { gzipSync } from 'zlib';
import { FileSource } from '../../../toolkit/io/file-source';
import { identifyFilesystem, probeFilesystem, FILESYSTEM_PROBE_BYTES } from '../../../toolkit/inspect/filesystems';
import { inspectGuest } from '../../../toolkit/inspect/guest';
import { kernelArchitecture } from '../../../toolkit/inspect/kernel-arch';
import { scanPartitions } from '../../../toolkit/inspect/partitions';
import { UUIDS, fakeArm64Image, fakeBzImage, fakeEfiLoader, makeDisk, makeFilesystem, rhelBootTree, workspace, type FilesystemSpec, type Workspace } from '../../helpers/guest-images';

let ws: Workspace;
beforeAll(() => {
  ws = workspace('inspect-fs-');
});
afterAll(() => ws?.cleanup());

async function identify(file: string) {
  const source = await FileSource.open(file);
  try {
    return await probeFilesystem(source, 0, source.size);
  } finally {
    await source.close();
  }
}

function keyFile(): string {
  const file = ws.path('key');
  writeFileSync(file, 'test key');
  return file;
}

function mkfs(tool: string, args: string[], sizeMiB: number, name: string): string {
  const file = ws.path(name);
  const fd = openSync(file, 'w');
  ftruncateSync(fd, sizeMiB * 1024 * 1024);
  closeSync(fd);
  execFileSync(tool, [...args, file], { stdio: 'pipe', env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });
  return file;
}

describe('filesystems made by their tools', () => {
  const uuid = '0f0e0d0c-0b0a-4908-8706-050403020100';
  it.each<[string, () => string, Record<string, unknown>]>([
    ['ext2', () => mkfs('mkfs.ext2', ['-q', '-F', '-L', 'old', '-U', uuid], 8, 'e2'), { type: 'ext2', label: 'old', uuid }],
    ['ext3', () => mkfs('mkfs.ext3', ['-q', '-F', '-L', 'journal', '-U', uuid], 8, 'e3'), { type: 'ext3', label: 'journal', uuid }],
    ['ext4', () => makeFilesystem(ws, 'e4', 8, { kind: 'ext4', label: 'root', uuid }), { type: 'ext4', label: 'root', uuid, version: '4096-byte blocks' }],
    ['xfs', () => makeFilesystem(ws, 'x', 300, { kind: 'xfs', label: 'xroot', uuid }), { type: 'xfs', label: 'xroot', uuid, version: 'v5' }],
    ['FAT16', () => makeFilesystem(ws, 'f16', 16, { kind: 'vfat', label: 'ESP', serial: '1234ABCD' }), { type: 'vfat', label: 'ESP', uuid: '1234-ABCD', version: 'FAT16' }],
    ['FAT32', () => mkfs('mkfs.vfat', ['-F', '32', '-n', 'EFI', '-i', 'CAFEF00D'], 40, 'f32'), { type: 'vfat', label: 'EFI', uuid: 'CAFE-F00D', version: 'FAT32' }],
    ['swap', () => makeFilesystem(ws, 'sw', 8, { kind: 'swap', label: 'swp', uuid }), { type: 'swap', label: 'swp', uuid }],
    ['LUKS1', () => mkfs('cryptsetup', ['luksFormat', '--batch-mode', '--type', 'luks1', '--pbkdf-force-iterations', '1000', '--uuid', uuid, '--key-file', keyFile()], 8, 'l1'), { type: 'luks', version: 'LUKS1', uuid, encrypted: true }],
    ['LUKS2', () => makeFilesystem(ws, 'l2', 20, { kind: 'luks', label: 'secret' }), { type: 'luks', version: 'LUKS2', label: 'secret', encrypted: true }],
    ['NTFS', () => makeFilesystem(ws, 'nt', 8, { kind: 'ntfs' }), { type: 'ntfs' }],
  ])('identifies %s', async (_name, build, expected) => {
    expect(await identify(build())).toMatchObject(expected);
  });

  it('tells nothing about a disk of zeros or random bytes', () => {
    expect(identifyFilesystem(Buffer.alloc(FILESYSTEM_PROBE_BYTES))).toBeUndefined();
    const noise = Buffer.alloc(FILESYSTEM_PROBE_BYTES);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) >>> 24;
    expect(identifyFilesystem(noise)).toBeUndefined();
  });
});

describe('filesystems without a tool here (signatures laid out from their specifications)', () => {
  it('identifies btrfs by its superblock at 64 KiB', () => {
    const bytes = Buffer.alloc(FILESYSTEM_PROBE_BYTES);
    bytes.write('_BHRfS_M', 0x10040, 'latin1');
    Buffer.from('00112233445566778899aabbccddeeff', 'hex').copy(bytes, 0x10020);
    bytes.write('home', 0x1012b, 'latin1');
    expect(identifyFilesystem(bytes)).toEqual({ type: 'btrfs', uuid: '00112233-4455-6677-8899-aabbccddeeff', label: 'home' });
  });

  it('identifies an LVM2 physical volume by its label in sector 1', () => {
    const bytes = Buffer.alloc(FILESYSTEM_PROBE_BYTES);
    bytes.write('LABELONE', 512, 'latin1');
    bytes.write('LVM2 001', 512 + 24, 'latin1');
    bytes.write('AbCdEfGhIjKlMnOpQrStUvWxYz012345', 512 + 32, 'latin1');
    expect(identifyFilesystem(bytes)).toEqual({ type: 'lvm2-pv', uuid: 'AbCdEfGhIjKlMnOpQrStUvWxYz012345' });
    bytes.write('LVM1 001', 512 + 24, 'latin1');
    expect(identifyFilesystem(bytes)).toBeUndefined();
  });

  it('identifies BitLocker by its -FVE-FS- OEM id and calls it encrypted', () => {
    const bytes = Buffer.alloc(FILESYSTEM_PROBE_BYTES);
    bytes.write('\xeb\x58\x90-FVE-FS-', 0, 'latin1');
    bytes[510] = 0x55;
    bytes[511] = 0xaa;
    expect(identifyFilesystem(bytes)).toEqual({ type: 'bitlocker', encrypted: true });
  });
});

describe('kernel architecture', () => {
  it('reads ELF, bzImage, arm64 Image, PE and a gzip-compressed Image', () => {
    const elf = (machine: number): Buffer => {
      const b = Buffer.alloc(64);
      b.writeUInt32BE(0x7f454c46, 0);
      b.writeUInt16LE(machine, 18);
      return b;
    };
    expect(kernelArchitecture(elf(0x3e))).toBe('x86_64');
    expect(kernelArchitecture(elf(0xb7))).toBe('arm64');
    expect(kernelArchitecture(elf(0x03))).toBe('i386');
    expect(kernelArchitecture(fakeBzImage(64))).toBe('x86_64');
    expect(kernelArchitecture(fakeBzImage(32))).toBe('i386');
    expect(kernelArchitecture(fakeArm64Image())).toBe('arm64');
    expect(kernelArchitecture(fakeEfiLoader(0xaa64))).toBe('arm64');
    expect(kernelArchitecture(gzipSync(fakeArm64Image()))).toBe('arm64');
    expect(kernelArchitecture(Buffer.alloc(4096))).toBeUndefined();
  });
});

describe('partition scan', () => {
  it('warns when the disk grew and the GPT backup is no longer at its end', async () => {
    const disk = makeDisk(ws, 'grown', { table: 'gpt', partitions: [{ sizeMiB: 4, fs: { kind: 'ext4' } }] });
    const size = readFileSync(disk).length;
    truncateSync(disk, size + 8 * 1024 * 1024);
    const source = await FileSource.open(disk);
    try {
      const scan = await scanPartitions(source);
      expect(scan.gpt).toEqual({ primary: true, backup: true });
      expect(scan.findings.map((f) => f.code)).toEqual(['gpt-backup-misplaced']);
      expect(scan.findings[0].message).toBe(
        `the primary GPT header places its backup at sector ${size / 512 - 1}, but the disk's last sector is ${(size + 8 * 1024 * 1024) / 512 - 1} (the disk was resized); ` +
          'the guest may warn until the GPT is moved to the end (sgdisk -e)',
      );
    } finally {
      await source.close();
    }
  });
});

describe('a root filesystem this inspector does not read', () => {
  it('accepts a disk whose root is on LVM with a warning that says so', async () => {
    const pv = Buffer.alloc(4096);
    pv.write('LABELONE', 512, 'latin1');
    pv.write('LVM2 001', 512 + 24, 'latin1');
    pv.write('AbCdEfGhIjKlMnOpQrStUvWxYz012345', 512 + 32, 'latin1');
    const disk = makeDisk(ws, 'rhel-lvm', {
      table: 'mbr',
      biosBootCode: true,
      partitions: [
        { sizeMiB: 16, bootable: true, fs: { kind: 'ext4', uuid: UUIDS.rhelBoot, tree: rhelBootTree() } },
        { sizeMiB: 8, type: '8e', fs: { kind: 'raw', bytes: pv } },
      ],
    });
    const source = await FileSource.open(disk);
    try {
      const report = await inspectGuest(source);
      expect(report.verdict.accepted).toBe(true);
      expect(report.findings.find((f) => f.code === 'os-not-identified')?.message).toMatch(/^no operating system could be identified: partition 2 is an LVM physical volume, whose files/);
    } finally {
      await source.close();
    }
  });

  it('accepts a RHEL-like disk with an XFS root, naming the kernel from its ext4 /boot, with a warning', async () => {
    const disk = makeDisk(ws, 'rhel-xfs', {
      table: 'mbr',
      biosBootCode: true,
      partitions: [
        { sizeMiB: 16, bootable: true, fs: { kind: 'ext4', uuid: UUIDS.rhelBoot, tree: rhelBootTree() } },
        { sizeMiB: 300, fs: { kind: 'xfs', uuid: UUIDS.rhelRoot } as FilesystemSpec },
      ],
    });
    const source = await FileSource.open(disk);
    try {
      const report = await inspectGuest(source);
      expect(report.verdict).toEqual({ accepted: true, message: 'accepted: an operating system that was not identified, x86_64, boots with legacy BIOS, kernel 5.14.0-362.8.1.el9_3.x86_64' });
      expect(report.findings).toContainEqual({
        severity: 'warning',
        code: 'os-not-identified',
        message:
          'no operating system could be identified: partition 2 is xfs, whose files this inspector does not read; ' +
          'the import goes on with kernel /boot/vmlinuz-5.14.0-362.8.1.el9_3.x86_64, but the distribution, its fstab and its kernel were not checked',
      });
      expect(report.bootloader.config).toBe('/boot/grub2/grub.cfg');
      expect(report.filesystems.map((fs) => [fs.type, fs.role, fs.uuid])).toEqual([
        ['ext4', 'boot', UUIDS.rhelBoot],
        ['xfs', 'data', UUIDS.rhelRoot],
      ]);
    } finally {
      await source.close();
    }
  });
});
