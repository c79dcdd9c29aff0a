/**
 * Guest inspection on disks built by the real tools (sfdisk, mkfs.*, cryptsetup), each shaped
 * like a system users import; every verdict's message is asserted word for word where it is
 * the user's only guide.
 */
import { copyFileSync, statSync } from 'fs';
import { FileSource } from '../../../toolkit/io/file-source';
import { inspectGuest, type GuestReport, type InspectGuestOptions } from '../../../toolkit/inspect/guest';
import {
  UUIDS, alpineTree, debianTree, fakeArm64Image, fakeEfiLoader, makeDisk, makeFilesystem, rhelBootTree, rhelTree, ubuntuTree,
  windowsBootCode, workspace, writeAt, type Tree, type Workspace,
} from '../../helpers/guest-images';

let ws: Workspace;
const disks: Record<string, string> = {};

async function inspect(name: string, options: InspectGuestOptions = {}): Promise<GuestReport> {
  const source = await FileSource.open(disks[name]);
  try {
    return await inspectGuest(source, options);
  } finally {
    await source.close();
  }
}

const codes = (report: GuestReport, severity = 'error'): string[] => report.findings.filter((f) => f.severity === severity).map((f) => f.code);

function windowsTree(hibernated: boolean): Tree {
  const tree: Tree = {
    'bootmgr': Buffer.alloc(1024, 7),
    'Windows/System32/config/SYSTEM': Buffer.concat([Buffer.from('regf'), Buffer.alloc(4092)]),
    'Windows/System32/config/SOFTWARE': Buffer.concat([Buffer.from('regf'), Buffer.alloc(4092)]),
    'Windows/SysWOW64/': '',
    'Program Files/': '',
    'Users/Public/': '',
  };
  // Enough names that System32's index spills out of the MFT record into INDX blocks.
  for (let i = 0; i < 120; i++) tree[`Windows/System32/driver-file-with-a-long-name-${String(i).padStart(3, '0')}.sys`] = 'x';
  // After a resume Windows keeps the file but marks it "wake": no saved session, nothing to refuse.
  tree['hiberfil.sys'] = Buffer.concat([Buffer.from(hibernated ? 'HIBR' : 'wake'), Buffer.alloc(8188)]);
  return tree;
}

beforeAll(() => {
  ws = workspace('inspect-guest-');
  const started = Date.now();
  disks.debianBios = makeDisk(ws, 'debian-bios', {
    table: 'mbr',
    biosBootCode: true,
    partitions: [{ sizeMiB: 24, bootable: true, fs: { kind: 'ext4', label: 'root', uuid: UUIDS.debianRoot, tree: debianTree() } }],
  });
  disks.debianNoBootCode = makeDisk(ws, 'debian-no-boot-code', {
    table: 'mbr',
    partitions: [{ sizeMiB: 24, fs: { kind: 'ext4', uuid: UUIDS.debianRoot, tree: debianTree() } }],
  });
  const esp = (serial = UUIDS.espSerial): { kind: 'vfat'; label: string; serial: string; tree: Tree } => ({
    kind: 'vfat',
    label: 'UEFI',
    serial,
    tree: { 'EFI/BOOT/BOOTX64.EFI': fakeEfiLoader(0x8664), 'EFI/ubuntu/grubx64.efi': fakeEfiLoader(0x8664), 'EFI/ubuntu/grub.cfg': `search.fs_uuid ${UUIDS.ubuntuRoot} root\n` },
  });
  disks.fstabMismatch = makeDisk(ws, 'fstab-mismatch', {
    table: 'mbr',
    biosBootCode: true,
    partitions: [
      {
        sizeMiB: 24,
        fs: {
          kind: 'ext4',
          uuid: UUIDS.debianRoot,
          tree: debianTree('0badc0de-0000-4000-8000-000000000001', 'LABEL=srv /srv ext4 defaults 0 2\nLABEL=backup /backup ext4 defaults,nofail 0 2\n/dev/sdb1 /data ext4 defaults,nofail 0 2\n'),
        },
      },
    ],
  });
  disks.ubuntuUefi = makeDisk(ws, 'ubuntu-uefi', {
    table: 'gpt',
    partitions: [
      { sizeMiB: 16, type: 'U', name: 'EFI System', fs: esp() },
      { sizeMiB: 24, name: 'root', fs: { kind: 'ext4', label: 'cloudimg-rootfs', uuid: UUIDS.ubuntuRoot, tree: ubuntuTree() } },
    ],
  });
  disks.ubuntuBoth = makeDisk(ws, 'ubuntu-both', {
    table: 'gpt',
    biosBootCode: true,
    partitions: [
      { sizeMiB: 1, type: '21686148-6449-6E6F-744E-656564454649', name: 'BIOS boot' },
      { sizeMiB: 16, type: 'U', fs: esp() },
      { sizeMiB: 24, fs: { kind: 'ext4', label: 'cloudimg-rootfs', uuid: UUIDS.ubuntuRoot, tree: ubuntuTree() } },
    ],
  });
  disks.rhel = makeDisk(ws, 'rhel', {
    table: 'mbr',
    biosBootCode: true,
    partitions: [
      { sizeMiB: 16, bootable: true, fs: { kind: 'ext4', uuid: UUIDS.rhelBoot, tree: rhelBootTree() } },
      { sizeMiB: 24, fs: { kind: 'ext4', uuid: UUIDS.rhelRoot, tree: rhelTree() } },
      { sizeMiB: 8, type: 'S', fs: { kind: 'swap', uuid: '6b6f4a1e-6f0b-4e55-9d8c-1a2b3c4d5e06' } },
    ],
  });
  disks.alpine = makeDisk(ws, 'alpine', {
    table: 'mbr',
    biosBootCode: true,
    partitions: [{ sizeMiB: 8, type: 'S', fs: { kind: 'swap' } }],
    logical: [
      { sizeMiB: 8, fs: { kind: 'ext4', label: 'scratch' } },
      { sizeMiB: 24, fs: { kind: 'ext4', uuid: UUIDS.alpineRoot, tree: alpineTree() } },
    ],
  });
  disks.windows = makeDisk(ws, 'windows', {
    table: 'mbr',
    biosBootCode: windowsBootCode(),
    partitions: [{ sizeMiB: 24, type: '7', bootable: true, fs: { kind: 'ntfs', label: 'Windows', tree: windowsTree(false) } }],
  });
  disks.windowsHibernated = makeDisk(ws, 'windows-hibernated', {
    table: 'mbr',
    biosBootCode: windowsBootCode(),
    partitions: [{ sizeMiB: 24, type: '7', bootable: true, fs: { kind: 'ntfs', label: 'Windows', tree: windowsTree(true) } }],
  });
  disks.luks = makeDisk(ws, 'luks', {
    table: 'mbr',
    biosBootCode: true,
    partitions: [
      { sizeMiB: 24, fs: { kind: 'ext4', uuid: UUIDS.debianRoot, tree: debianTree() } },
      { sizeMiB: 20, fs: { kind: 'luks', label: 'home' } },
    ],
  });
  disks.empty = makeFilesystem(ws, 'empty', 8, { kind: 'raw', bytes: Buffer.alloc(0) });
  disks.data = makeDisk(ws, 'data', { table: 'mbr', partitions: [{ sizeMiB: 16, fs: { kind: 'ext4', label: 'data', uuid: UUIDS.data, tree: { 'projects/readme.txt': 'hello\n' } } }] });
  const bareTree = debianTree();
  disks.bareWithKernel = makeFilesystem(ws, 'bare-with-kernel', 24, { kind: 'ext4', uuid: UUIDS.debianRoot, tree: bareTree });
  const withoutBoot = Object.fromEntries(Object.entries(bareTree).filter(([path]) => !path.startsWith('boot/')));
  disks.bareWithoutKernel = makeFilesystem(ws, 'bare-without-kernel', 24, { kind: 'ext4', label: 'rootfs', uuid: UUIDS.debianRoot, tree: withoutBoot });
  disks.twoOs = makeDisk(ws, 'two-os', {
    table: 'mbr',
    biosBootCode: true,
    partitions: [
      { sizeMiB: 24, bootable: true, fs: { kind: 'ext4', uuid: UUIDS.debianRoot, tree: debianTree() } },
      { sizeMiB: 24, fs: { kind: 'ext4', uuid: UUIDS.alpineRoot, tree: alpineTree() } },
    ],
  });
  disks.arm64 = makeDisk(ws, 'arm64', {
    table: 'gpt',
    partitions: [
      { sizeMiB: 16, type: 'U', fs: { kind: 'vfat', tree: { 'EFI/BOOT/BOOTAA64.EFI': fakeEfiLoader(0xaa64) } } },
      { sizeMiB: 24, fs: { kind: 'ext4', uuid: UUIDS.debianRoot, tree: { ...debianTree(), 'boot/vmlinuz-6.1.0-18-amd64': fakeArm64Image() } } },
    ],
  });
  process.stdout.write(`built ${Object.keys(disks).length} test disks in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
});

afterAll(() => ws?.cleanup());

describe('Linux', () => {
  it('accepts a Debian BIOS disk and names its OS, kernel, boot mode and architecture', async () => {
    const report = await inspect('debianBios');
    expect(report.verdict).toEqual({ accepted: true, message: 'accepted: Debian GNU/Linux 12 (bookworm), x86_64, boots with legacy BIOS, kernel 6.1.0-18-amd64' });
    expect(report.os).toEqual({ family: 'linux', distribution: 'debian', version: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)', location: 'partition 1' });
    expect(report.partitionTable).toBe('mbr');
    expect(report.bootMode).toBe('legacy-bios');
    expect(report.bootloader).toMatchObject({ biosBootCode: true, biosLoader: 'GRUB', config: '/boot/grub/grub.cfg' });
    expect(report.kernels).toEqual([{ path: '/boot/vmlinuz-6.1.0-18-amd64', version: '6.1.0-18-amd64', architecture: 'x86_64', initramfs: '/boot/initrd.img-6.1.0-18-amd64' }]);
    expect(report.filesystems).toEqual([expect.objectContaining({ type: 'ext4', uuid: UUIDS.debianRoot, label: 'root', partition: 1, mountpoint: '/', role: 'linux-root' })]);
    expect(codes(report)).toEqual([]);
  });

  it('refuses a requested boot mode or architecture the disk does not have', async () => {
    const uefi = await inspect('debianBios', { bootMode: 'uefi' });
    expect(uefi.verdict.message).toBe(
      'ClientError: BootMode uefi was requested but the disk boots only with legacy BIOS (boot code in the MBR and no EFI system partition loader); request BootMode legacy-bios',
    );
    const arm = await inspect('debianBios', { architecture: 'arm64' });
    expect(arm.verdict.message).toBe('ClientError: Architecture arm64 was requested but the guest\'s kernel /boot/vmlinuz-6.1.0-18-amd64 is x86_64; request Architecture x86_64');
    expect((await inspect('debianBios', { bootMode: 'uefi-preferred', architecture: 'x86_64' })).verdict.accepted).toBe(true);
  });

  it('refuses a requested Platform the operating system found is not', async () => {
    expect((await inspect('debianBios', { platform: 'Windows' })).verdict.message).toBe(
      'ClientError: Platform Windows was requested but the disk holds Debian GNU/Linux 12 (bookworm) on partition 1; request Platform Linux, or leave Platform out',
    );
    expect((await inspect('debianBios', { platform: 'Linux' })).verdict.accepted).toBe(true);
    expect((await inspect('windows', { platform: 'Linux' })).verdict.message).toBe(
      'ClientError: Platform Linux was requested but the disk holds Windows on partition 1; request Platform Windows, or leave Platform out',
    );
    expect((await inspect('windows', { platform: 'Windows' })).verdict.accepted).toBe(true);
    // A data volume is never judged by what a guest would be.
    expect((await inspect('debianBios', { platform: 'Windows', purpose: 'data' })).verdict.accepted).toBe(true);
  });

  it('refuses a disk whose MBR has no boot code and that has no EFI system partition', async () => {
    const report = await inspect('debianNoBootCode');
    expect(report.bootMode).toBe('none');
    expect(report.verdict.message).toBe(
      'ClientError: no bootloader: the MBR has no boot code and there is no EFI system partition with \\EFI\\BOOT\\BOOTX64.EFI; install a bootloader in the guest (grub-install) and export the disk again',
    );
    expect((await inspect('debianNoBootCode', { policy: { requireBootloader: false } })).verdict.accepted).toBe(true);
  });

  it('accepts an Ubuntu UEFI disk: GPT with an ESP, os-release under /usr/lib, fstab labels resolved', async () => {
    const report = await inspect('ubuntuUefi');
    expect(report.verdict).toEqual({ accepted: true, message: 'accepted: Ubuntu 22.04.4 LTS, x86_64, boots with UEFI, kernel 5.15.0-97-generic' });
    expect(report.partitionTable).toBe('gpt');
    expect(report.bootloader).toMatchObject({ biosBootCode: false, espPartition: 1, efiLoaders: ['/EFI/BOOT/BOOTX64.EFI'] });
    const espFs = report.filesystems.find((fs) => fs.partition === 1)!;
    expect(espFs).toMatchObject({ type: 'vfat', label: 'UEFI', uuid: 'ABCD-1234', version: 'FAT16', role: 'esp', mountpoint: '/boot/efi' });
    expect(codes(report, 'warning')).toEqual([]);
    expect((await inspect('ubuntuUefi', { bootMode: 'legacy-bios' })).verdict.message).toBe(
      'ClientError: BootMode legacy-bios was requested but the disk boots only with UEFI (an EFI system partition and no BIOS boot code); request BootMode uefi',
    );
  });

  it('reports a disk that boots both ways', async () => {
    const report = await inspect('ubuntuBoth');
    expect(report.bootMode).toBe('both');
    expect(report.verdict.message).toBe('accepted: Ubuntu 22.04.4 LTS, x86_64, boots with legacy BIOS or UEFI, kernel 5.15.0-97-generic');
    expect((await inspect('ubuntuBoth', { bootMode: 'legacy-bios' })).verdict.accepted).toBe(true);
  });

  it('follows a RHEL-like fstab to its separate /boot filesystem for kernels and the grub2 config', async () => {
    const report = await inspect('rhel');
    expect(report.verdict.message).toBe('accepted: Rocky Linux 9.3 (Blue Onyx), x86_64, boots with legacy BIOS, kernel 5.14.0-362.8.1.el9_3.x86_64');
    expect(report.os).toMatchObject({ distribution: 'rocky', version: '9.3', location: 'partition 2' });
    expect(report.kernels[0]).toEqual({
      path: '/boot/vmlinuz-5.14.0-362.8.1.el9_3.x86_64',
      version: '5.14.0-362.8.1.el9_3.x86_64',
      architecture: 'x86_64',
      initramfs: '/boot/initramfs-5.14.0-362.8.1.el9_3.x86_64.img',
    });
    expect(report.bootloader.config).toBe('/boot/grub2/grub.cfg');
    expect(report.filesystems.map((fs) => [fs.partition, fs.type, fs.role, fs.mountpoint])).toEqual([
      [1, 'ext4', 'boot', '/boot'],
      [2, 'ext4', 'linux-root', '/'],
      [3, 'swap', 'swap', undefined],
    ]);
  });

  it('finds Alpine on a logical partition inside an extended partition', async () => {
    const report = await inspect('alpine');
    expect(report.partitions.map((p) => [p.index, p.type, p.role])).toEqual([
      [1, '0x82', undefined],
      [2, '0x05', 'extended'],
      [5, '0x83', 'logical'],
      [6, '0x83', 'logical'],
    ]);
    expect(report.verdict.message).toBe('accepted: Alpine Linux v3.19, x86_64, boots with legacy BIOS, kernel virt');
    expect(report.os).toMatchObject({ distribution: 'alpine', version: '3.19.1', location: 'partition 6' });
    expect(report.bootloader.config).toBe('/boot/extlinux.conf');
    // The cdrom line (iso9660, noauto) is not a filesystem of this disk and is no problem.
    expect(report.findings.filter((f) => f.severity !== 'info')).toEqual([]);
  });

  it('checks that fstab and the GRUB config name filesystems on this disk', async () => {
    const report = await inspect('fstabMismatch');
    expect(report.verdict.message).toBe(
      'ClientError: /etc/fstab line 2 (UUID=0badc0de-0000-4000-8000-000000000001 on /) names a filesystem that is not on this disk, so the guest cannot mount / at boot; ' +
        'fix /etc/fstab (use the UUID that blkid shows) or include the disk that holds it; ' +
        '/boot/grub/grub.cfg boots with root=UUID=0badc0de-0000-4000-8000-000000000001, which is not a filesystem on this disk; regenerate the bootloader configuration',
    );
    expect(report.findings).toContainEqual({
      severity: 'warning',
      code: 'fstab-unresolved',
      message: '/etc/fstab line 3 (LABEL=srv on /srv) names a filesystem that is not on this disk; boot waits for it and may drop to an emergency shell: add nofail or import the disk that holds it',
    });
    expect(report.findings).toContainEqual(expect.objectContaining({ code: 'fstab-unresolved-optional', message: expect.stringContaining('LABEL=backup on /backup') }));
    expect(report.findings).toContainEqual(expect.objectContaining({ code: 'fstab-device-name', message: expect.stringContaining('/dev/sdb1') }));
  });

  it('reads the kernel architecture from an arm64 Image and the EFI loader', async () => {
    const report = await inspect('arm64');
    expect(report.architecture).toBe('arm64');
    expect(report.bootloader.efiLoaders).toEqual(['/EFI/BOOT/BOOTAA64.EFI']);
    expect((await inspect('arm64', { architecture: 'x86_64' })).verdict.message).toBe(
      'ClientError: Architecture x86_64 was requested but the guest\'s kernel /boot/vmlinuz-6.1.0-18-amd64 is arm64; request Architecture arm64',
    );
  });
});

describe('Windows', () => {
  it('accepts a Windows NTFS disk with \\Windows\\System32\\config\\SYSTEM', async () => {
    const report = await inspect('windows');
    expect(report.verdict).toEqual({ accepted: true, message: 'accepted: Windows, x86_64, boots with legacy BIOS' });
    expect(report.os).toEqual({ family: 'windows', distribution: 'windows', prettyName: 'Windows', location: 'partition 1' });
    expect(report.bootloader.biosLoader).toBe('Windows MBR');
    expect(report.filesystems[0]).toMatchObject({ type: 'ntfs', role: 'windows' });
    expect(report.filesystems[0].uuid).toMatch(/^[0-9A-F]{16}$/);
    expect(report.findings.map((f) => f.code)).toEqual(['windows-hiberfil-inactive', 'windows-version-not-read']);
  });

  it('refuses a hibernated Windows', async () => {
    const report = await inspect('windowsHibernated');
    expect(report.verdict).toEqual({
      accepted: false,
      message:
        'ClientError: Windows on partition 1 (label Windows) is hibernated (\\hiberfil.sys holds a saved session); it will not boot cleanly: start it, shut it down fully ' +
        '(shutdown /s /t 0, or turn off Fast Startup with powercfg /h off) and export the disk again',
    });
  });
});

describe('refusals', () => {
  it('refuses an encrypted volume, or warns when the policy allows it', async () => {
    const report = await inspect('luks');
    expect(report.filesystems[1]).toMatchObject({ type: 'luks', version: 'LUKS2', label: 'home', encrypted: true, role: 'encrypted' });
    expect(report.verdict.message).toBe(
      'ClientError: partition 2 (label home) is a LUKS2 encrypted volume, which the import can neither inspect nor boot without its key; decrypt it before exporting the disk',
    );
    const allowed = await inspect('luks', { policy: { refuseEncrypted: false } });
    expect(allowed.verdict.accepted).toBe(true);
    expect(codes(allowed, 'warning')).toContain('encrypted-volume');
  });

  it('refuses a disk with no partition table and no filesystem', async () => {
    const report = await inspect('empty');
    expect(report.partitionTable).toBe('none');
    expect(report.verdict.message).toBe(
      'ClientError: the disk (8 MiB) has no partition table and no filesystem at its start (its first sectors are empty); export the whole system disk, with its partition table',
    );
  });

  it('refuses a data disk and says what is on it', async () => {
    const report = await inspect('data');
    expect(report.verdict.message).toBe(
      'ClientError: no bootable operating system found: the disk has one ext4 partition (label data) without /etc/os-release or /boot; import the system disk, or import this disk as a data volume (ImportVolume) instead of an image',
    );
  });

  it('refuses a disk with two operating systems, unless the policy allows multi-boot', async () => {
    const report = await inspect('twoOs');
    expect(report.verdict.message).toBe(
      'ClientError: the disk holds 2 operating systems (Debian GNU/Linux 12 (bookworm) on partition 1, Alpine Linux v3.19 on partition 2); import a disk with exactly one',
    );
    expect((await inspect('twoOs', { policy: { refuseMultiBoot: false } })).verdict.accepted).toBe(true);
  });

  it('refuses an OS family the policy does not allow', async () => {
    const report = await inspect('windows', { policy: { allowedFamilies: ['linux'] } });
    expect(report.verdict.message).toBe('ClientError: Windows on partition 1 is windows, which this service does not import (allowed: linux)');
  });
});

describe('partition images', () => {
  it('accepts a bare ext4 filesystem that carries its kernel, and names it', async () => {
    const report = await inspect('bareWithKernel');
    expect(report.partitionImage).toBe(true);
    expect(report.verdict.message).toBe('accepted: Debian GNU/Linux 12 (bookworm), x86_64, kernel /boot/vmlinuz-6.1.0-18-amd64');
    expect(report.os?.location).toBe('the filesystem');
  });

  it('refuses a bare filesystem without a kernel unless a kernel and ramdisk are associated', async () => {
    const report = await inspect('bareWithoutKernel');
    expect(report.verdict.message).toBe(
      'ClientError: the image is a bare ext4 filesystem (label rootfs) with no partition table (a partition image) and no kernel in /boot; ' +
        'give KernelId and RamdiskId to boot it with an associated kernel and ramdisk, or import the whole disk with its partition table',
    );
    const associated = await inspect('bareWithoutKernel', { kernelAssociated: true });
    expect(associated.verdict).toEqual({ accepted: true, message: 'accepted: Debian GNU/Linux 12 (bookworm), boots with the associated kernel and ramdisk' });
  });
});

describe('partition tables', () => {
  it('uses the backup GPT when the primary is damaged, and refuses a protective MBR with no GPT at all', async () => {
    const file = ws.path('gpt-damaged.raw');
    copyFileSync(disks.ubuntuUefi, file);
    disks.gptDamaged = file;
    writeAt(file, 512 + 16, Buffer.from([1, 2, 3, 4])); // primary header CRC
    const report = await inspect('gptDamaged');
    expect(codes(report, 'warning')).toContain('gpt-primary-damaged');
    expect(report.partitions).toHaveLength(2);
    expect(report.verdict.accepted).toBe(true);
    const size = statSync(file).size;
    writeAt(file, size - 512, Buffer.alloc(512)); // backup header gone too
    const broken = await inspect('gptDamaged');
    expect(broken.verdict.message).toBe(
      'ClientError: the MBR is a GPT protective MBR (type 0xEE) but neither the primary GPT header (sector 1) nor the backup (last sector) is valid; repair the GPT (for example with gdisk or sgdisk) before exporting the disk again',
    );
  });

  it('refuses overlapping partitions and partitions past the end of the disk', async () => {
    const file = ws.path('bad-table.raw');
    copyFileSync(disks.debianBios, file);
    disks.badTable = file;
    const entry = Buffer.alloc(16);
    entry[4] = 0x83;
    entry.writeUInt32LE(4096, 8); // inside partition 1
    entry.writeUInt32LE(200000, 12); // far past the 26 MiB disk
    writeAt(file, 446 + 16, entry);
    const report = await inspect('badTable');
    expect(codes(report)).toEqual(expect.arrayContaining(['partition-past-end', 'partitions-overlap']));
    expect(report.findings.find((f) => f.code === 'partition-past-end')!.message).toBe(
      'partition 2 ends at 99.7 MiB, past the end of the 26 MiB disk; the image is truncated or was taken from a larger disk: export the whole disk',
    );
    expect(report.verdict.accepted).toBe(false);
  });
});
