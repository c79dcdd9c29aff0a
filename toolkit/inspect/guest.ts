/**
 * Static guest validation: what is on a disk (partitions, filesystems, operating systems,
 * kernels, bootloaders) and whether it can be imported, read in place through bounded ranged
 * reads. The verdict's message says what was found and what to do, as a ClientError status.
 *
 * Entry point: inspectGuest(source, options) → GuestReport.
 */
import type { RandomAccessSource } from '../io/source';
import { biosBootCode } from './boot-code';
import { ExtTree } from './ext-tree';
import { FatTree } from './fat-tree';
import { MAX_TEXT_FILE_BYTES, type FileTree } from './file-tree';
import { error, humanSize, info, warning, type Finding } from './findings';
import { probeFilesystem, type FilesystemInfo } from './filesystems';
import { InspectionSource } from './inspection-source';
import { KERNEL_HEADER_BYTES, kernelArchitecture, type Architecture } from './kernel-arch';
import { fstabSource, parseExtlinuxConfig, parseFstab, parseGrubConfig, parseOsRelease, type FstabEntry, type GrubConfig } from './linux-config';
import { NtfsTree } from './ntfs-tree';
import { ESP_TYPES, partitionTypeName, scanPartitions, type Partition } from './partitions';

export type { Architecture } from './kernel-arch';
export type OsFamily = 'linux' | 'windows';
export type RequestedBootMode = 'legacy-bios' | 'uefi' | 'uefi-preferred';
export type RequestedPlatform = 'Linux' | 'Windows';
export type BootMode = 'legacy-bios' | 'uefi' | 'both' | 'none';

/** What the operator allows (configuration), as opposed to what the user asked for (options). */
export interface GuestPolicy {
  allowedFamilies: OsFamily[];
  /** Refuse a disk with neither BIOS boot code nor a UEFI loader. */
  requireBootloader: boolean;
  /** Refuse LUKS and BitLocker volumes (else: a warning). */
  refuseEncrypted: boolean;
  /** Refuse a disk with more than one operating system (else: the first one found is reported). */
  refuseMultiBoot: boolean;
}

export const DEFAULT_GUEST_POLICY: GuestPolicy = { allowedFamilies: ['linux', 'windows'], requireBootloader: true, refuseEncrypted: true, refuseMultiBoot: true };

export interface InspectGuestOptions {
  /** The BootMode the user asked for; checked against what the disk can do. */
  bootMode?: RequestedBootMode;
  /** The Architecture the user asked for; checked against the kernel's. */
  architecture?: Architecture;
  /** The Platform the user asked for (Linux or Windows); checked against the operating system found. */
  platform?: RequestedPlatform;
  /** A kernel and ramdisk are associated with the import (KernelId and RamdiskId): a partition image may then carry none. */
  kernelAssociated?: boolean;
  policy?: Partial<GuestPolicy>;
  /**
   * What the disk is to become: a system disk (an image or an instance's root: it must boot) or a
   * data volume (ImportVolume, ImportSnapshot: reported, never refused for what a guest would need).
   * Default: system.
   */
  purpose?: 'system' | 'data';
  /** Refuse to read more than this many bytes from the source. Default 256 MiB. */
  maxBytesRead?: number;
}

export interface PartitionReport extends Partition {
  typeName?: string;
  filesystem?: FilesystemInfo['type'];
}

export interface FilesystemReport extends FilesystemInfo {
  /** The partition's number; absent for a bare filesystem (partition image). */
  partition?: number;
  offset: number;
  size: number;
  /** Where the guest's fstab mounts it. */
  mountpoint?: string;
  /** What inspection took it for. */
  role?: 'linux-root' | 'windows' | 'boot' | 'esp' | 'data' | 'swap' | 'encrypted';
}

export interface OsReport {
  family: OsFamily;
  distribution?: string;
  version?: string;
  prettyName?: string;
  /** Where its root filesystem is: "partition 1", or "the filesystem" for a partition image. */
  location: string;
}

export interface KernelReport {
  /** Path in the guest ("/boot/vmlinuz-6.1.0-18-amd64"). */
  path: string;
  version?: string;
  architecture?: Architecture;
  initramfs?: string;
}

export interface GuestReport {
  image: { name: string; size: number };
  partitionTable: 'mbr' | 'gpt' | 'none';
  /** True when the image is one bare filesystem, not a partitioned disk. */
  partitionImage: boolean;
  partitions: PartitionReport[];
  filesystems: FilesystemReport[];
  os?: OsReport;
  /** Every operating system found (more than one: a multi-boot disk). */
  operatingSystems: OsReport[];
  kernels: KernelReport[];
  bootloader: { biosBootCode: boolean; biosLoader?: string; espPartition?: number; efiLoaders: string[]; config?: string };
  bootMode: BootMode;
  architecture?: Architecture;
  findings: Finding[];
  verdict: { accepted: boolean; message: string };
  /** Bytes read from the source to make this report. */
  bytesRead: number;
}

interface Volume {
  report: FilesystemReport;
  tree?: FileTree;
}

const EFI_FALLBACK_LOADERS: [string, Architecture][] = [
  ['/EFI/BOOT/BOOTX64.EFI', 'x86_64'],
  ['/EFI/BOOT/BOOTAA64.EFI', 'arm64'],
  ['/EFI/BOOT/BOOTIA32.EFI', 'i386'],
];

export async function inspectGuest(disk: RandomAccessSource, options: InspectGuestOptions = {}): Promise<GuestReport> {
  const policy = { ...DEFAULT_GUEST_POLICY, ...options.policy };
  const source = new InspectionSource(disk, { maxBytesRead: options.maxBytesRead });
  const findings: Finding[] = [];
  const volumes: Volume[] = [];
  try {
    const scan = await scanPartitions(source);
    findings.push(...scan.findings);
    const partitions: PartitionReport[] = scan.table.partitions.map((partition) => {
      const typeName = partitionTypeName(partition.type);
      return typeName ? { ...partition, typeName } : { ...partition };
    });
    let partitionImage = false;
    if (scan.table.type === 'none') {
      const bare = await probeFilesystem(source, 0, source.size);
      if (bare) {
        partitionImage = true;
        volumes.push({ report: { ...bare, offset: 0, size: source.size } });
      } else if (!findings.some((finding) => finding.severity === 'error')) {
        findings.push(
          error(
            'no-partition-table',
            `the disk (${humanSize(source.size)}) has no partition table and no filesystem at its start${(await isAllZero(source)) ? ' (its first sectors are empty)' : ''}; ` +
              'export the whole system disk, with its partition table',
          ),
        );
      }
    } else {
      for (const partition of partitions) {
        if (partition.role === 'extended' || partition.start + partition.size > source.size) continue;
        const fs = await probeFilesystem(source, partition.start, partition.size);
        if (fs) partition.filesystem = fs.type;
        if (fs) volumes.push({ report: { ...fs, partition: partition.index, offset: partition.start, size: partition.size } });
      }
    }
    await openTrees(source, volumes, partitions, findings);

    const bootloader: GuestReport['bootloader'] = { biosBootCode: false, efiLoaders: [] };
    if (!partitionImage && scan.table.type !== 'none') {
      const bios = biosBootCode(await source.read(0, 512));
      bootloader.biosBootCode = bios.present;
      if (bios.loader) bootloader.biosLoader = bios.loader;
    }
    const architectures: { architecture: Architecture; from: string }[] = [];
    await inspectEsp(volumes, bootloader, architectures, findings);

    const operatingSystems: OsReport[] = [];
    const kernels: KernelReport[] = [];
    for (const volume of volumes) {
      if (!volume.tree) continue;
      if (volume.tree.kind === 'ext' && (await isLinuxRoot(volume.tree))) {
        volume.report.role = 'linux-root';
        const os = await inspectLinux(volume, volumes, kernels, bootloader, architectures, findings, partitionImage);
        operatingSystems.push(os);
      } else if (volume.tree.kind === 'ntfs' && (await volume.tree.kindOf('/Windows/System32/config/SYSTEM')) === 'file') {
        volume.report.role = 'windows';
        operatingSystems.push(await inspectWindows(volume, architectures, findings));
      }
    }
    if (operatingSystems.length === 0 && !partitionImage && volumes.some(isUnreadRoot)) {
      // The root may be on a filesystem whose files are not read here (XFS, btrfs): a separate
      // /boot (kernels at its top) still tells the kernel, its architecture and the GRUB config.
      for (const volume of volumes) {
        if (volume.tree?.kind !== 'ext' || volume.report.role) continue;
        const before = kernels.length;
        await findKernels(volume.tree, '/', '/boot', kernels, architectures, findings);
        if (kernels.length === before) continue;
        volume.report.role = 'boot';
        for (const path of ['/grub2/grub.cfg', '/grub/grub.cfg']) {
          if ((await volume.tree.kindOf(path)) === 'file') {
            bootloader.config ??= `/boot${path}`;
            break;
          }
        }
      }
    }
    for (const volume of volumes) {
      volume.report.role ??= volume.report.encrypted ? 'encrypted' : volume.report.type === 'swap' ? 'swap' : 'data';
    }
    // A bare filesystem without /etc may still be a kernel's home (a /boot image).
    if (partitionImage && operatingSystems.length === 0 && volumes[0]?.tree) await findKernels(volumes[0].tree, '/boot', '/boot', kernels, architectures, findings);

    const bootMode: BootMode = bootloader.biosBootCode && bootloader.efiLoaders.length ? 'both' : bootloader.biosBootCode ? 'legacy-bios' : bootloader.efiLoaders.length ? 'uefi' : 'none';
    const architecture = pickArchitecture(architectures, findings);
    const os = operatingSystems[0];

    // Whatever a filesystem library made of a failed read, the failure is the answer.
    if (source.failure) throw source.failure;
    const data = options.purpose === 'data';
    if (data) judgeDataVolume(volumes, operatingSystems, findings);
    else judge({ policy, options, volumes, operatingSystems, kernels, bootMode, architecture, partitionImage, findings, bootloader });
    const errors = findings.filter((finding) => finding.severity === 'error');
    const verdict = errors.length
      ? { accepted: false, message: `ClientError: ${errors.map((finding) => finding.message).join('; ')}` }
      : { accepted: true, message: data ? `accepted: data volume, ${listFilesystems(volumes)}` : acceptedMessage(os, kernels, bootMode, architecture, partitionImage, options) };
    return {
      image: { name: disk.name, size: disk.size },
      partitionTable: scan.table.type,
      partitionImage,
      partitions,
      filesystems: volumes.map((volume) => volume.report),
      ...(os ? { os } : {}),
      operatingSystems,
      kernels,
      bootloader,
      bootMode,
      ...(architecture ? { architecture } : {}),
      findings,
      verdict,
      bytesRead: source.bytesRead,
    };
  } finally {
    for (const volume of volumes) await volume.tree?.close().catch(() => undefined);
  }
}

async function isAllZero(source: RandomAccessSource): Promise<boolean> {
  const head = await source.read(0, Math.min(source.size, 4096));
  return head.every((byte) => byte === 0);
}

async function openTrees(source: InspectionSource, volumes: Volume[], partitions: PartitionReport[], findings: Finding[]): Promise<void> {
  for (const volume of volumes) {
    const { type, offset, size } = volume.report;
    const where = describeVolume(volume.report);
    try {
      if (type === 'ext2' || type === 'ext3' || type === 'ext4') volume.tree = await ExtTree.open(source, offset, size);
      else if (type === 'vfat') volume.tree = await FatTree.open(source, offset, size);
      else if (type === 'ntfs') {
        const ntfs = await NtfsTree.open(source, offset, size);
        volume.tree = ntfs;
        const label = await ntfs.volumeLabel();
        if (label) volume.report.label = label;
      }
      else if (type === 'xfs' || type === 'btrfs') {
        findings.push(warning('filesystem-not-read', `${where} is ${type}: identified by its superblock, but its files are not read by this inspector (an operating system on it is not recognised)`));
      }
    } catch (cause) {
      if (source.failure) throw source.failure;
      findings.push(warning('filesystem-unreadable', `${where} looks like ${type} but could not be read (${(cause as Error).message.split('\n')[0]}); it may be damaged`));
    }
    const partition = partitions.find((p) => p.index === volume.report.partition);
    if (partition && ESP_TYPES.has(partition.type)) volume.report.role = 'esp';
  }
}

function describeVolume(fs: Pick<FilesystemReport, 'partition' | 'label' | 'type'>): string {
  const label = fs.label ? ` (label ${fs.label})` : '';
  return fs.partition === undefined ? `the filesystem${label}` : `partition ${fs.partition}${label}`;
}

async function inspectEsp(volumes: Volume[], bootloader: GuestReport['bootloader'], architectures: { architecture: Architecture; from: string }[], findings: Finding[]): Promise<void> {
  for (const volume of volumes) {
    if (volume.report.role !== 'esp') continue;
    bootloader.espPartition ??= volume.report.partition;
    if (!volume.tree) {
      findings.push(warning('esp-unreadable', `the EFI system partition (partition ${volume.report.partition}) is not a FAT16/FAT32 filesystem that could be read`));
      continue;
    }
    for (const [path, architecture] of EFI_FALLBACK_LOADERS) {
      const head = await volume.tree.readFile(path, 4096);
      if (!head) continue;
      bootloader.efiLoaders.push(path);
      architectures.push({ architecture: kernelArchitecture(head) ?? architecture, from: path });
    }
    const vendors = ((await volume.tree.list('/EFI')) ?? []).filter((name) => name.toUpperCase() !== 'BOOT');
    if (bootloader.efiLoaders.length === 0) {
      findings.push(
        warning(
          'esp-no-fallback-loader',
          `the EFI system partition (partition ${volume.report.partition}) has no \\EFI\\BOOT\\BOOTX64.EFI${vendors.length ? ` (only ${vendors.map((v) => `\\EFI\\${v}`).join(', ')})` : ''}; ` +
            'a new instance has no firmware boot entry, so install the loader to the fallback path as well (grub-install --removable)',
        ),
      );
    }
    for (const vendor of vendors) {
      if ((await volume.tree.kindOf(`/EFI/${vendor}/grub.cfg`)) === 'file') bootloader.config ??= `(ESP)/EFI/${vendor}/grub.cfg`;
    }
  }
  if (bootloader.espPartition === undefined) {
    // A FAT filesystem with \EFI on a partition not typed as ESP: firmware will not look there.
    for (const volume of volumes) {
      if (volume.tree?.kind === 'fat' && (await volume.tree.kindOf('/EFI')) === 'directory') {
        findings.push(warning('esp-wrong-type', `${describeVolume(volume.report)} holds \\EFI but its partition type is not "EFI system"; UEFI firmware will not boot from it`));
      }
    }
  }
}

async function isLinuxRoot(tree: FileTree): Promise<boolean> {
  if ((await tree.kindOf('/etc')) !== 'directory') return false;
  for (const path of ['/etc/os-release', '/usr/lib/os-release', '/etc/fstab']) if ((await tree.kindOf(path)) === 'file') return true;
  return false;
}

async function readText(tree: FileTree, path: string): Promise<string | undefined> {
  const bytes = await tree.readFile(path, MAX_TEXT_FILE_BYTES);
  return bytes?.toString('utf8');
}

async function inspectLinux(
  root: Volume,
  volumes: Volume[],
  kernels: KernelReport[],
  bootloader: GuestReport['bootloader'],
  architectures: { architecture: Architecture; from: string }[],
  findings: Finding[],
  partitionImage: boolean,
): Promise<OsReport> {
  const tree = root.tree!;
  const location = root.report.partition === undefined ? 'the filesystem' : `partition ${root.report.partition}`;
  const os: OsReport = { family: 'linux', location };
  const osReleaseText = (await readText(tree, '/etc/os-release')) ?? (await readText(tree, '/usr/lib/os-release'));
  if (osReleaseText) {
    const release = parseOsRelease(osReleaseText);
    if (release.ID) os.distribution = release.ID;
    if (release.VERSION_ID) os.version = release.VERSION_ID;
    if (release.PRETTY_NAME ?? release.NAME) os.prettyName = release.PRETTY_NAME ?? release.NAME;
  } else {
    const redhat = await readText(tree, '/etc/redhat-release');
    const alpine = await readText(tree, '/etc/alpine-release');
    const debian = await readText(tree, '/etc/debian_version');
    if (redhat) Object.assign(os, { distribution: 'rhel', prettyName: redhat.trim(), version: /release\s+([\d.]+)/.exec(redhat)?.[1] });
    else if (alpine) Object.assign(os, { distribution: 'alpine', version: alpine.trim(), prettyName: `Alpine Linux ${alpine.trim()}` });
    else if (debian) Object.assign(os, { distribution: 'debian', version: debian.trim(), prettyName: `Debian ${debian.trim()}` });
    findings.push(warning('no-os-release', `${location} looks like a Linux root filesystem but has no /etc/os-release; the distribution ${os.prettyName ? `was taken from older release files (${os.prettyName})` : 'is unknown'}`));
  }

  // fstab: every entry the guest mounts at boot must name a filesystem on this disk.
  let bootTree: { tree: FileTree; prefix: string; guestPrefix: string } = { tree, prefix: '/boot', guestPrefix: '/boot' };
  const fstabText = await readText(tree, '/etc/fstab');
  if (fstabText === undefined) {
    findings.push(warning('no-fstab', `${location} has no /etc/fstab; the guest will mount only its root filesystem`));
  } else {
    for (const entry of parseFstab(fstabText)) {
      const resolved = resolveFstab(entry, volumes, findings, partitionImage);
      if (!resolved) continue;
      resolved.report.mountpoint ??= entry.mountpoint;
      if (entry.mountpoint === '/boot' && resolved.tree && resolved !== root) {
        resolved.report.role = 'boot';
        bootTree = { tree: resolved.tree, prefix: '', guestPrefix: '/boot' };
      }
    }
  }
  root.report.mountpoint ??= '/';

  await findKernels(bootTree.tree, bootTree.prefix || '/', bootTree.guestPrefix, kernels, architectures, findings);

  for (const path of ['/grub/grub.cfg', '/grub2/grub.cfg', '/extlinux.conf', '/extlinux/extlinux.conf', '/syslinux/syslinux.cfg']) {
    const text = await readText(bootTree.tree, `${bootTree.prefix}${path}`);
    if (text === undefined) continue;
    bootloader.config ??= `${bootTree.guestPrefix}${path}`;
    const config: GrubConfig = path.includes('grub') ? parseGrubConfig(text) : parseExtlinuxConfig(text);
    checkBootConfig(`${bootTree.guestPrefix}${path}`, config, kernels, bootTree.guestPrefix, volumes, findings);
    break;
  }
  return os;
}

async function findKernels(tree: FileTree, dir: string, guestDir: string, kernels: KernelReport[], architectures: { architecture: Architecture; from: string }[], findings: Finding[]): Promise<void> {
  const names = (await tree.list(dir)) ?? [];
  const base = dir === '/' ? '' : dir;
  for (const name of names.sort()) {
    const match = /^(?:vmlinuz|vmlinux|bzImage|Image|kernel)(?:-(.+))?$/.exec(name);
    if (!match || name.endsWith('.sig') || name.endsWith('.hmac')) continue;
    if ((await tree.kindOf(`${base}/${name}`)) !== 'file') continue;
    const version = match[1];
    const head = await tree.readFile(`${base}/${name}`, KERNEL_HEADER_BYTES);
    const architecture = head ? kernelArchitecture(head) : undefined;
    const kernel: KernelReport = { path: `${guestDir}/${name}`, ...(version ? { version } : {}), ...(architecture ? { architecture } : {}) };
    const candidates = version ? [`initrd.img-${version}`, `initramfs-${version}.img`, `initramfs-${version}`, `initrd-${version}.img`, `initrd-${version}`] : ['initrd.img', 'initramfs.img', 'initramfs'];
    const initramfs = candidates.find((candidate) => names.includes(candidate));
    if (initramfs) kernel.initramfs = `${guestDir}/${initramfs}`;
    else findings.push(warning('no-initramfs', `kernel ${kernel.path} has no initramfs beside it; it boots only if its root filesystem's drivers are built in`));
    if (architecture) architectures.push({ architecture, from: kernel.path });
    kernels.push(kernel);
  }
}

/** The filesystem an fstab entry names, with findings for entries that name none on this disk. */
function resolveFstab(entry: FstabEntry, volumes: Volume[], findings: Finding[], partitionImage: boolean): Volume | undefined {
  if (['proc', 'sysfs', 'tmpfs', 'devpts', 'none', 'devtmpfs', 'cgroup', 'cgroup2', 'iso9660', 'nfs', 'nfs4', 'cifs'].includes(entry.type) && !entry.spec.startsWith('UUID=') && !entry.spec.startsWith('LABEL=')) return undefined;
  const source = fstabSource(entry.spec);
  const optional = entry.options.includes('nofail') || entry.options.includes('noauto');
  const where = `/etc/fstab line ${entry.line} (${entry.spec} on ${entry.mountpoint})`;
  if (source.by === 'uuid' || source.by === 'label') {
    const wanted = source.value.toLowerCase();
    const found = volumes.find((volume) => (source.by === 'uuid' ? volume.report.uuid : volume.report.label)?.toLowerCase() === wanted);
    if (found) return found;
    if (partitionImage && entry.mountpoint === '/') return undefined;
    const what = `${where} names a filesystem that is not on this disk`;
    if (optional) findings.push(info('fstab-unresolved-optional', `${what}; it is marked ${entry.options.includes('nofail') ? 'nofail' : 'noauto'}, so boot goes on without it`));
    else if (entry.mountpoint === '/' || entry.mountpoint === '/boot' || entry.mountpoint === '/usr') {
      findings.push(error('fstab-unresolved', `${what}, so the guest cannot mount ${entry.mountpoint} at boot; fix /etc/fstab (use the UUID that blkid shows) or include the disk that holds it`));
    } else {
      findings.push(warning('fstab-unresolved', `${what}; boot waits for it and may drop to an emergency shell: add nofail or import the disk that holds it`));
    }
    return undefined;
  }
  if (source.by === 'device' && /^\/dev\/(sd|hd|vd|xvd|nvme)/.test(source.value)) {
    findings.push(warning('fstab-device-name', `${where} names a device; on EC2 disks appear as /dev/nvme* or /dev/xvd*, so use UUID= or LABEL= instead`));
  }
  return undefined;
}

function checkBootConfig(path: string, config: GrubConfig, kernels: KernelReport[], guestPrefix: string, volumes: Volume[], findings: Finding[]): void {
  for (const kernel of config.kernels) {
    const name = kernel.replace(/^\([^)]*\)/, '').split('/').pop()!;
    if (!kernels.some((k) => k.path === `${guestPrefix}/${name}`)) {
      findings.push(warning('boot-config-kernel-missing', `${path} boots ${kernel}, which is not in ${guestPrefix}; regenerate the configuration (update-grub / grub2-mkconfig)`));
    }
  }
  for (const root of new Set(config.roots)) {
    const source = fstabSource(root);
    if (source.by !== 'uuid' && source.by !== 'label') continue;
    const found = volumes.some((volume) => (source.by === 'uuid' ? volume.report.uuid : volume.report.label)?.toLowerCase() === source.value.toLowerCase());
    if (!found) findings.push(error('boot-config-root-unresolved', `${path} boots with root=${root}, which is not a filesystem on this disk; regenerate the bootloader configuration`));
  }
}

async function inspectWindows(volume: Volume, architectures: { architecture: Architecture; from: string }[], findings: Finding[]): Promise<OsReport> {
  const tree = volume.tree!;
  const where = describeVolume(volume.report);
  const location = volume.report.partition === undefined ? 'the filesystem' : `partition ${volume.report.partition}`;
  // 64-bit Windows keeps its 32-bit system files in SysWOW64.
  const wow64 = (await tree.kindOf('/Windows/SysWOW64')) === 'directory';
  architectures.push({ architecture: wow64 ? 'x86_64' : 'i386', from: `${where} (\\Windows\\SysWOW64 ${wow64 ? 'present' : 'absent'})` });
  const hiberfil = await tree.readFile('/hiberfil.sys', 8);
  if (hiberfil !== undefined) {
    const signature = hiberfil.toString('latin1', 0, 4).toLowerCase();
    // "hibr" (or "rstr" while resuming) heads a saved session; after a resume Windows writes "wake" or zeros.
    if (signature === 'hibr' || signature === 'rstr') {
      findings.push(
        error(
          'windows-hibernated',
          `Windows on ${where} is hibernated (\\hiberfil.sys holds a saved session); it will not boot cleanly: start it, shut it down fully ` +
            '(shutdown /s /t 0, or turn off Fast Startup with powercfg /h off) and export the disk again',
        ),
      );
    } else {
      findings.push(info('windows-hiberfil-inactive', `${where} has \\hiberfil.sys but it holds no saved session`));
    }
  }
  findings.push(info('windows-version-not-read', `Windows found on ${where} (\\Windows\\System32\\config\\SYSTEM); its edition and version are not read by this inspector`));
  return { family: 'windows', distribution: 'windows', prettyName: 'Windows', location };
}

function pickArchitecture(found: { architecture: Architecture; from: string }[], findings: Finding[]): Architecture | undefined {
  const distinct = [...new Set(found.map((entry) => entry.architecture))];
  if (distinct.length > 1) {
    findings.push(warning('architecture-mixed', `the disk holds code for several architectures: ${found.map((entry) => `${entry.from} is ${entry.architecture}`).join(', ')}`));
  }
  return found[0]?.architecture;
}

interface Judgement {
  policy: GuestPolicy;
  options: InspectGuestOptions;
  volumes: Volume[];
  operatingSystems: OsReport[];
  kernels: KernelReport[];
  bootMode: BootMode;
  architecture?: Architecture;
  partitionImage: boolean;
  findings: Finding[];
  bootloader: GuestReport['bootloader'];
}

/** Turns what was found into refusals and warnings, by policy and by what the user asked for. */
function judge(j: Judgement): void {
  const { policy, options, volumes, operatingSystems, kernels, findings } = j;
  for (const volume of volumes.filter((v) => v.report.encrypted)) {
    const what = `${describeVolume(volume.report)} is a ${volume.report.type === 'luks' ? volume.report.version ?? 'LUKS' : 'BitLocker'} encrypted volume`;
    if (policy.refuseEncrypted) findings.push(error('encrypted-volume', `${what}, which the import can neither inspect nor boot without its key; decrypt it before exporting the disk`));
    else findings.push(warning('encrypted-volume', `${what}; its contents were not inspected`));
  }
  if (findings.some((finding) => finding.severity === 'error' && ['no-partition-table', 'protective-mbr-without-gpt'].includes(finding.code))) return;

  if (j.partitionImage) {
    const fs = volumes[0].report;
    const what = `the image is a bare ${fs.type} filesystem${fs.label ? ` (label ${fs.label})` : ''} with no partition table (a partition image)`;
    if (options.kernelAssociated) {
      findings.push(info('partition-image-kernel-associated', `${what}; it boots with the associated kernel and ramdisk`));
    } else if (kernels.length > 0) {
      findings.push(info('partition-image-own-kernel', `${what}; it carries its own kernel ${kernels[0].path}`));
    } else {
      findings.push(error('partition-image-without-kernel', `${what} and no kernel in /boot; give KernelId and RamdiskId to boot it with an associated kernel and ramdisk, or import the whole disk with its partition table`));
    }
  } else if (operatingSystems.length === 0 && volumes.some(isUnreadRoot)) {
    const unread = volumes.filter(isUnreadRoot).map((volume) => `${describeVolume(volume.report)} is ${volume.report.type === 'lvm2-pv' ? 'an LVM physical volume' : volume.report.type}`);
    findings.push(
      warning(
        'os-not-identified',
        `no operating system could be identified: ${unread.join(', ')}, whose files this inspector does not read; ` +
          `the import goes on${kernels.length ? ` with kernel ${kernels[0].path}` : ''}, but the distribution, its fstab and its kernel were not checked`,
      ),
    );
  } else if (operatingSystems.length === 0) {
    findings.push(error('no-operating-system', `no bootable operating system found: ${describeContents(volumes)}; import the system disk, or import this disk as a data volume (ImportVolume) instead of an image`));
  }

  if (operatingSystems.length > 1) {
    const list = operatingSystems.map((os) => `${os.prettyName ?? os.family} on ${os.location}`).join(', ');
    if (policy.refuseMultiBoot) findings.push(error('multi-boot', `the disk holds ${operatingSystems.length} operating systems (${list}); import a disk with exactly one`));
    else findings.push(warning('multi-boot', `the disk holds ${operatingSystems.length} operating systems (${list}); the first one is reported`));
  }
  for (const os of operatingSystems) {
    if (!policy.allowedFamilies.includes(os.family)) {
      findings.push(error('os-family-not-allowed', `${os.prettyName ?? os.family} on ${os.location} is ${os.family}, which this service does not import (allowed: ${policy.allowedFamilies.join(', ') || 'none'})`));
    }
  }
  const linux = operatingSystems.find((os) => os.family === 'linux');
  if (linux && !j.partitionImage && kernels.length === 0) {
    findings.push(error('no-kernel', `${linux.prettyName ?? 'Linux'} on ${linux.location} has no kernel in /boot (no vmlinuz-*); install a kernel package in the guest before exporting it`));
  }

  if (!j.partitionImage && (operatingSystems.length > 0 || volumes.some(isUnreadRoot))) {
    if (j.bootMode === 'none' && policy.requireBootloader) {
      findings.push(
        error(
          'no-bootloader',
          `no bootloader: the MBR has no boot code and there is no EFI system partition with \\EFI\\BOOT\\BOOTX64.EFI; install a bootloader in the guest (grub-install${linux ? '' : ', or bcdboot for Windows'}) and export the disk again`,
        ),
      );
    }
    const requested = options.bootMode;
    if (requested === 'legacy-bios' && (j.bootMode === 'uefi')) {
      findings.push(error('boot-mode-mismatch', 'BootMode legacy-bios was requested but the disk boots only with UEFI (an EFI system partition and no BIOS boot code); request BootMode uefi'));
    } else if (requested === 'uefi' && j.bootMode === 'legacy-bios') {
      findings.push(error('boot-mode-mismatch', 'BootMode uefi was requested but the disk boots only with legacy BIOS (boot code in the MBR and no EFI system partition loader); request BootMode legacy-bios'));
    }
  }
  const found = operatingSystems[0];
  if (options.platform && found && operatingSystems.length === 1 && found.family !== options.platform.toLowerCase()) {
    const actual: RequestedPlatform = found.family === 'windows' ? 'Windows' : 'Linux';
    findings.push(error('platform-mismatch', `Platform ${options.platform} was requested but the disk holds ${found.prettyName ?? found.family} on ${found.location}; request Platform ${actual}, or leave Platform out`));
  }
  if (options.architecture && j.architecture && options.architecture !== j.architecture) {
    findings.push(error('architecture-mismatch', `Architecture ${options.architecture} was requested but the guest's ${kernels.length ? `kernel ${kernels[0].path}` : 'system'} is ${j.architecture}; request Architecture ${j.architecture}`));
  }
  if (operatingSystems.length > 0 && !j.architecture) {
    findings.push(warning('architecture-unknown', 'the guest\'s architecture could not be read from its kernel or loader'));
  }
}

/**
 * A data volume is the user's bytes, whatever they are: nothing a guest would need is required,
 * and what would refuse a system disk (no partition table, an encrypted volume) is only reported.
 */
function judgeDataVolume(volumes: Volume[], operatingSystems: OsReport[], findings: Finding[]): void {
  for (const [i, finding] of findings.entries()) {
    if (finding.severity === 'error') findings[i] = warning(finding.code, finding.message);
  }
  for (const volume of volumes.filter((v) => v.report.encrypted)) {
    findings.push(info('encrypted-volume', `${describeVolume(volume.report)} is a ${volume.report.type === 'luks' ? (volume.report.version ?? 'LUKS') : 'BitLocker'} encrypted volume; its contents were not inspected`));
  }
  const systems = operatingSystems.map((os) => `${os.prettyName ?? os.family} on ${os.location}`);
  findings.push(
    info(
      'data-volume',
      `imported as a data volume: no operating system or bootloader is required${systems.length ? ` (it holds ${systems.join(', ')}, which is not booted from this volume)` : ''}`,
    ),
  );
}

/** "ext4 on partition 1 (label data), swap on partition 2", "no filesystem that could be identified" */
function listFilesystems(volumes: Volume[]): string {
  if (volumes.length === 0) return 'no filesystem that could be identified';
  return volumes.map((volume) => `${volume.report.type} on ${describeVolume(volume.report)}`).join(', ');
}

/** A volume that may hold a root whose files are not read here: XFS, btrfs, or LVM (its logical volumes are not assembled). */
function isUnreadRoot(volume: Volume): boolean {
  return volume.report.type === 'xfs' || volume.report.type === 'btrfs' || volume.report.type === 'lvm2-pv';
}

/** "one ext4 partition (label data) without /etc/os-release or /boot", "2 partitions: …" */
function describeContents(volumes: Volume[]): string {
  if (volumes.length === 0) return 'the disk has no filesystem that could be identified';
  const describe = (volume: Volume): string => {
    const { type, label, partition } = volume.report;
    const what = `${type}${partition === undefined ? ' filesystem' : ' partition'}${label ? ` (label ${label})` : ''}`;
    if (volume.tree?.kind === 'ext') return `${what} without /etc/os-release or /boot`;
    if (volume.tree?.kind === 'ntfs') return `${what} without \\Windows\\System32\\config\\SYSTEM`;
    return what;
  };
  if (volumes.length === 1) return `the disk has one ${describe(volumes[0])}`;
  return `the disk has ${volumes.length} partitions: ${volumes.map(describe).join(', ')}`;
}

function acceptedMessage(os: OsReport | undefined, kernels: KernelReport[], bootMode: BootMode, architecture: Architecture | undefined, partitionImage: boolean, options: InspectGuestOptions): string {
  const parts = [os ? (os.prettyName ?? os.family) : partitionImage ? 'a bare filesystem' : 'an operating system that was not identified'];
  if (architecture) parts.push(architecture);
  if (partitionImage) parts.push(options.kernelAssociated ? 'boots with the associated kernel and ramdisk' : `kernel ${kernels[0]?.path}`);
  else {
    parts.push(bootMode === 'both' ? 'boots with legacy BIOS or UEFI' : bootMode === 'none' ? 'no bootloader found' : `boots with ${bootMode === 'uefi' ? 'UEFI' : 'legacy BIOS'}`);
    if (kernels[0]) parts.push(`kernel ${kernels[0].version ?? kernels[0].path}`);
  }
  return `accepted: ${parts.join(', ')}`;
}
