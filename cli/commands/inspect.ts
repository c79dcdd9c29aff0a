/**
 * `imaging inspect FILE`: the guest report the validate stage makes, for a local image of any
 * format the toolkit reads. The image is opened by its format's reader and inspected in place
 * as its virtual disk (no conversion, no scratch copy). Exit code 0 when the image would be
 * accepted, 1 when it would be refused or cannot be read, 2 for a usage error.
 */
import { ImageFormatError } from '../../toolkit/errors';
import type { FormatName } from '../../toolkit/formats/format';
import { displayName, openImage } from '../../toolkit/formats/registry';
import { inspectGuest, type Architecture, type GuestReport, type RequestedBootMode } from '../../toolkit/inspect/guest';
import { humanSize } from '../../toolkit/inspect/findings';
import { VirtualDiskSource } from '../../toolkit/inspect/virtual-disk-source';
import { FileSource } from '../../toolkit/io/file-source';

export const INSPECT_FORMATS: FormatName[] = ['raw', 'vmdk', 'vhd', 'vhdx', 'qcow2', 'ova'];

export interface InspectCommandOptions {
  /** The format the user declares; refused when the file is another. */
  format?: string;
  json?: boolean;
  bootMode?: RequestedBootMode;
  architecture?: Architecture;
  /** KernelId and RamdiskId will be given: a partition image needs no kernel of its own. */
  kernelAssociated?: boolean;
  out?: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };
}

export async function inspectCommand(path: string, options: InspectCommandOptions = {}): Promise<number> {
  const out = options.out ?? { stdout: process.stdout, stderr: process.stderr };
  const format = options.format?.toLowerCase();
  if (format !== undefined && !INSPECT_FORMATS.includes(format as FormatName)) {
    out.stderr.write(`error: unknown format ${options.format} (one of ${INSPECT_FORMATS.join(', ')})\n`);
    return 2;
  }
  let file: FileSource | undefined;
  try {
    file = await FileSource.open(path);
    const reader = await openImage(file, format ? { claimedFormat: format as FormatName } : {});
    let report: GuestReport;
    try {
      const disk = await VirtualDiskSource.open(reader, file);
      report = await inspectGuest(disk, { bootMode: options.bootMode, architecture: options.architecture, kernelAssociated: options.kernelAssociated });
    } finally {
      await reader.close();
    }
    const image = { format: reader.info.format, ...(reader.info.subformat ? { subformat: reader.info.subformat } : {}) };
    if (options.json) out.stdout.write(`${JSON.stringify({ ...report, image: { ...report.image, name: file.name, ...image } }, null, 2)}\n`);
    else out.stdout.write(describeReport(file.name, displayName(reader.info.format, reader.info.subformat), report));
    return report.verdict.accepted ? 0 : 1;
  } catch (error) {
    out.stderr.write(`error: ${messageOf(error)}\n`);
    return 1;
  } finally {
    await file?.close();
  }
}

function messageOf(error: unknown): string {
  if (error instanceof ImageFormatError) return `${error.message} [check: ${error.check}]`;
  if ((error as { code?: string })?.code === 'ENOENT') return `no such file: ${(error as { path?: string }).path}`;
  return error instanceof Error ? error.message : String(error);
}

/** The report as a person reads it: what is on the disk, then the findings, then the verdict. */
export function describeReport(name: string, format: string, report: GuestReport): string {
  const lines: string[] = [];
  const row = (label: string, value: string): void => {
    lines.push(`${`${label}:`.padEnd(15)}${value}`);
  };
  row('image', `${name} (${format}, ${humanSize(report.image.size)} virtual)`);
  row('partitions', report.partitionImage ? 'none: a bare filesystem (partition image)' : report.partitionTable === 'none' ? 'no partition table' : report.partitionTable.toUpperCase());
  for (const p of report.partitions) {
    const fs = report.filesystems.find((f) => f.partition === p.index);
    const parts = [`${humanSize(p.start)} +${humanSize(p.size)}`, p.typeName ?? p.type];
    if (p.role === 'extended') parts.push('extended');
    if (p.bootable) parts.push('active');
    if (fs) parts.push(describeFilesystem(fs));
    lines.push(`  ${String(p.index).padStart(2)}  ${parts.join(', ')}`);
  }
  if (report.partitionImage && report.filesystems[0]) lines.push(`      ${describeFilesystem(report.filesystems[0])}`);
  row('os', report.operatingSystems.length ? report.operatingSystems.map((os) => `${os.prettyName ?? os.family} (${os.family}${os.version ? ` ${os.version}` : ''}) on ${os.location}`).join('; ') : 'none found');
  row('architecture', report.architecture ?? 'unknown');
  row('boot mode', report.bootMode);
  const loaders = [report.bootloader.biosBootCode ? `BIOS boot code${report.bootloader.biosLoader ? ` (${report.bootloader.biosLoader})` : ''}` : '', ...report.bootloader.efiLoaders];
  row('bootloader', [...loaders.filter(Boolean), report.bootloader.config ? `config ${report.bootloader.config}` : ''].filter(Boolean).join(', ') || 'none');
  row('kernels', report.kernels.length ? '' : 'none');
  for (const k of report.kernels) lines.push(`  ${k.path}${k.architecture ? ` (${k.architecture})` : ''}${k.initramfs ? `, initramfs ${k.initramfs}` : ', no initramfs'}`);
  if (report.kernels.length) lines.splice(lines.length - report.kernels.length - 1, 1, 'kernels:');
  if (report.findings.length) lines.push('findings:');
  for (const f of report.findings) lines.push(`  ${f.severity.padEnd(7)} ${f.code}: ${f.message}`);
  row('read', `${humanSize(report.bytesRead)} of the virtual disk`);
  row('verdict', report.verdict.message);
  return `${lines.join('\n')}\n`;
}

function describeFilesystem(fs: GuestReport['filesystems'][number]): string {
  const details = [fs.type + (fs.version ? ` ${fs.version}` : '')];
  if (fs.label) details.push(`label ${fs.label}`);
  if (fs.uuid) details.push(`UUID ${fs.uuid}`);
  if (fs.mountpoint) details.push(`mounted on ${fs.mountpoint}`);
  if (fs.role && fs.role !== 'data') details.push(fs.role);
  return details.join(', ');
}
