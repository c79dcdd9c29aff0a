/**
 * `imaging import-instance FILE... [--disk FILE[,format=…]]`: what euca-import-instance does, for
 * one disk or several as EC2's DiskImage.N. Every disk is checked first (a wrong format is
 * refused before anything is uploaded), then uploaded exactly as `imaging import-volume` uploads
 * one (parts, manifest, presigned URLs), one progress bar per disk; then one ImportInstance call
 * names them all, the first as the boot disk and the others as the instance's further volumes.
 */
import { basename } from 'path';
import { MultiBar, Presets } from 'cli-progress';
import type { ManifestFileFormat } from '../../toolkit/bundle/import-manifest';
import type { ClientContext } from '../client-options';
import { conversionTaskView, type ConversionTaskView } from './conversion-tasks';
import { mebibytesDone, prepareUpload, uploadBar, uploadPrepared, type ImportVolumeOptions, type PreparedUpload, type UploadProgress, type UploadedImport } from './import-volume';

/** One disk of the instance, as given on the command line. */
export interface InstanceDisk {
  file: string;
  format: ManifestFileFormat;
  /** DiskImage.N.Description. */
  description?: string;
  /** DiskImage.N.Volume.Size; the virtual disk size rounded up to GiB when left out. */
  volumeSizeGiB?: number;
}

/** The upload settings every disk shares, and the instance to make. */
export interface ImportInstanceOptions extends Omit<ImportVolumeOptions, 'format' | 'description' | 'volumeSizeGiB'> {
  architecture?: string;
  instanceType?: string;
  /** Windows, or undefined for any other guest (EC2 has no other value). */
  platform?: string;
  /** The instance's description; each disk has its own. */
  instanceDescription?: string;
  groupNames?: string[];
  subnetId?: string;
  privateIpAddress?: string;
  shutdownBehavior?: string;
  /** Extension parameters: boot the converted disk under qemu (BootCheck), waiting for this line (BootCheckMarker). */
  bootCheck?: boolean;
  bootCheckMarker?: string;
  /** Extension parameters KernelId, RamdiskId, VirtualizationType and Layout of the boot disk. */
  kernelId?: string;
  ramdiskId?: string;
  virtualizationType?: string;
  layout?: string;
}

export interface UploadedDisk {
  file: string;
  format: ManifestFileFormat;
  manifestUrl: string;
  bytes: number;
  volumeSizeGiB: number;
}

export interface ImportInstanceResult {
  conversionTaskId: string;
  instanceId: string;
  /** The boot disk's manifest. */
  manifestUrl: string;
  /** Every disk as uploaded, the boot disk first (DiskImage.1, .2, …). */
  disks: UploadedDisk[];
  /** The conversion task as ImportInstance answered it, with every volume. */
  conversionTask: ConversionTaskView;
}

const FORMATS: readonly ManifestFileFormat[] = ['RAW', 'VMDK', 'VHD'];
const DISK_KEYS = ['file', 'format', 'description', 'volume-size'] as const;

/**
 * A `--disk` value: `FILE[,format=RAW|VMDK|VHD][,description=TEXT][,volume-size=GiB]`, or with
 * `file=FILE` last for a name with a comma (it takes the rest of the value). What it leaves out
 * comes from `defaults` (the command's --format, --disk-description and --volume-size).
 */
export function parseDiskSpec(spec: string, defaults: Partial<Omit<InstanceDisk, 'file'>>): InstanceDisk {
  const fields: Partial<Record<(typeof DISK_KEYS)[number], string>> = {};
  // file= comes last and takes the rest, commas and all.
  const fileAt = spec.startsWith('file=') ? 0 : spec.indexOf(',file=');
  if (fileAt >= 0) fields.file = spec.slice(spec.indexOf('file=', fileAt) + 'file='.length);
  const listed = fileAt >= 0 ? spec.slice(0, fileAt) : spec;
  for (const [i, item] of (listed === '' ? [] : listed.split(',')).entries()) {
    const eq = item.indexOf('=');
    const key = eq > 0 ? item.slice(0, eq).trim().toLowerCase() : '';
    if ((DISK_KEYS as readonly string[]).includes(key) && key !== 'file') {
      fields[key as (typeof DISK_KEYS)[number]] = item.slice(eq + 1);
    } else if (i === 0 && fields.file === undefined) {
      fields.file = item;
    } else {
      throw new Error(`--disk ${spec}: "${item}" is not one of ${DISK_KEYS.map((k) => `${k}=`).join(', ')}`);
    }
  }
  if (!fields.file) throw new Error(`--disk ${spec}: no file named`);
  return diskOf(fields.file, {
    format: fields.format !== undefined ? formatOf(fields.format, `--disk ${spec}`) : defaults.format,
    description: fields.description ?? defaults.description,
    volumeSizeGiB: fields['volume-size'] !== undefined ? volumeSizeOf(fields['volume-size'], `--disk ${spec}`) : defaults.volumeSizeGiB,
  });
}

/** A disk from a FILE argument with the command's defaults; its format is required by then. */
export function diskOf(file: string, settings: Partial<Omit<InstanceDisk, 'file'>>): InstanceDisk {
  if (!settings.format) throw new Error(`${file}: no format; give --format, or --disk ${file},format=RAW|VMDK|VHD`);
  return { file, format: settings.format, ...(settings.description !== undefined ? { description: settings.description } : {}), ...(settings.volumeSizeGiB !== undefined ? { volumeSizeGiB: settings.volumeSizeGiB } : {}) };
}

export function formatOf(text: string, where: string): ManifestFileFormat {
  const format = text.toUpperCase() as ManifestFileFormat;
  if (!FORMATS.includes(format)) throw new Error(`${where}: format ${text} is not one of ${FORMATS.join(', ')}`);
  return format;
}

function volumeSizeOf(text: string, where: string): number {
  const size = Number(text);
  if (!Number.isInteger(size) || size < 1) throw new Error(`${where}: volume-size ${text} is not a whole number of GiB`);
  return size;
}

/** A single disk has the bar import-volume shows. */
function oneBar(prepared: PreparedUpload): { bars: UploadProgress[]; stop(): void } {
  const bar = uploadBar(prepared.size, prepared.parts);
  return { bars: [bar], stop: () => bar.stop() };
}

/** One bar per disk, all shown from the start, each filled as its disk uploads (disks go one after another). */
function diskBars(prepared: PreparedUpload[]): { bars: UploadProgress[]; stop(): void } {
  const multi = new MultiBar({ format: '{name} |{bar}| {percentage}% {value}/{total} MiB | {parts}', hideCursor: true }, Presets.shades_classic);
  const width = Math.max(...prepared.map((p) => basename(p.file).length));
  const bars = prepared.map((p, i) => {
    const bar = multi.create(Math.ceil(p.size / 2 ** 20), 0, { name: `disk ${i + 1} ${basename(p.file).padEnd(width)}`, parts: `0/${p.parts} parts` });
    return { update: (bytes: number, done: number, total: number) => bar.update(mebibytesDone(bytes, p.size), { parts: `${done}/${total} parts` }) };
  });
  return { bars, stop: () => multi.stop() };
}

/** Where each disk's parts go: under --prefix, each disk in a folder of its own (two disks may have one file name). */
function prefixFor(options: ImportInstanceOptions, index: number, count: number): string | undefined {
  if (options.prefix === undefined || count === 1) return options.prefix;
  return `${options.prefix}disk${index + 1}/`;
}

export async function importInstance(ctx: ClientContext, disks: InstanceDisk[], options: ImportInstanceOptions): Promise<ImportInstanceResult> {
  if (disks.length === 0) throw new Error('no disk to import: name the boot disk first, then any further disks');
  const prepared: PreparedUpload[] = [];
  for (const [i, disk] of disks.entries()) {
    prepared.push(await prepareUpload(disk.file, { format: disk.format, volumeSizeGiB: disk.volumeSizeGiB, partSizeMiB: options.partSizeMiB, prefix: prefixFor(options, i, disks.length) }));
  }
  const shown = !options.progress ? undefined : prepared.length === 1 ? oneBar(prepared[0]) : diskBars(prepared);
  const uploaded: UploadedImport[] = [];
  try {
    for (const [i, disk] of prepared.entries()) uploaded.push(await uploadPrepared(ctx, disk, { ...options, format: disk.format }, shown?.bars[i]));
  } finally {
    shown?.stop();
  }

  const params: Record<string, string | number | undefined> = {
    Platform: options.platform,
    Description: options.instanceDescription,
    'LaunchSpecification.Architecture': options.architecture,
    'LaunchSpecification.InstanceType': options.instanceType,
    'LaunchSpecification.Placement.AvailabilityZone': options.availabilityZone,
    'LaunchSpecification.SubnetId': options.subnetId,
    'LaunchSpecification.PrivateIpAddress': options.privateIpAddress,
    'LaunchSpecification.InstanceInitiatedShutdownBehavior': options.shutdownBehavior,
    BootCheck: options.bootCheck || options.bootCheckMarker ? 'true' : undefined,
    BootCheckMarker: options.bootCheckMarker,
    KernelId: options.kernelId,
    RamdiskId: options.ramdiskId,
    VirtualizationType: options.virtualizationType,
    Layout: options.layout,
  };
  for (const [i, disk] of disks.entries()) {
    const n = `DiskImage.${i + 1}`;
    params[`${n}.Image.Format`] = disk.format;
    params[`${n}.Image.Bytes`] = uploaded[i].size;
    params[`${n}.Image.ImportManifestUrl`] = uploaded[i].manifestUrl;
    params[`${n}.Volume.Size`] = uploaded[i].volumeSizeGiB;
    params[`${n}.Description`] = disk.description;
  }
  (options.groupNames ?? []).forEach((group, i) => (params[`LaunchSpecification.GroupName.${i + 1}`] = group));
  const response = await ctx.ec2.call('ImportInstance', params);
  const task = response.conversionTask ?? {};
  return {
    conversionTaskId: String(task.conversionTaskId),
    instanceId: String(task.importInstance?.instanceId),
    manifestUrl: uploaded[0].manifestUrl,
    disks: disks.map((disk, i) => ({ file: disk.file, format: disk.format, manifestUrl: uploaded[i].manifestUrl, bytes: uploaded[i].size, volumeSizeGiB: uploaded[i].volumeSizeGiB })),
    conversionTask: conversionTaskView(task),
  };
}
