/** describe-conversion-tasks and cancel-conversion-task: EC2 answers turned into plain records and text. */
import type { Ec2Client } from '../ec2-client';
import type { BootCheckResult, ValidationReport } from '../../tasks/task';

export interface ConversionTaskView {
  conversionTaskId: string;
  state: string;
  statusMessage: string;
  expirationTime?: string;
  progress?: number;
  format?: string;
  imageSize?: number;
  bytesConverted?: number;
  volumeId?: string;
  volumeSizeGiB?: number;
  imageLocation?: string;
  imageSha256?: string;
  description?: string;
  /** Import-instance tasks only. */
  instanceId?: string;
  platform?: string;
  volumeDescription?: string;
  /** Import-instance tasks: how the instance boots (extension parameters KernelId, RamdiskId, VirtualizationType; the layout found). */
  kernelId?: string;
  ramdiskId?: string;
  virtualizationType?: string;
  layout?: string;
  /** What the validate stage found on the disk (its guest report), once it has run. */
  validation?: ValidationReport;
  /** How far the disk booted under qemu (the boot-check stage), when it was booted. */
  bootCheck?: BootCheckResult;
  /** Import-instance tasks with several disks: each one, the boot disk first. */
  disks?: DiskView[];
}

export interface DiskView {
  status: string;
  statusMessage?: string;
  progress?: number;
  format?: string;
  imageSize?: number;
  bytesConverted?: number;
  volumeId?: string;
  volumeSizeGiB?: number;
  imageSha256?: string;
  description?: string;
}

const num = (v: unknown) => (v === undefined || v === '' ? undefined : Number(v));
const str = (v: unknown) => (v === undefined || v === '' ? undefined : String(v));
const items = (v: any): Record<string, any>[] => (Array.isArray(v?.item) ? v.item : []);
/** The element's text children as they are, leaving out empty ones. */
const strings = (v: Record<string, any> | undefined): Record<string, string> =>
  Object.fromEntries(Object.entries(v ?? {}).filter(([, value]) => typeof value === 'string' && value !== ''));

/** The <validation> element back as the report the task keeps (numbers and booleans from their text). */
export function validationView(v: Record<string, any> | undefined): ValidationReport | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const report: ValidationReport = {
    sizeBytes: num(v.sizeBytes) ?? 0,
    partitionTable: (str(v.partitionTable) ?? 'none') as ValidationReport['partitionTable'],
  };
  if (v.purpose) report.purpose = v.purpose;
  if (v.os) report.os = strings(v.os) as unknown as ValidationReport['os'];
  if (v.kernels !== undefined) report.kernels = items(v.kernels).map((k) => strings(k) as unknown as NonNullable<ValidationReport['kernels']>[number]);
  if (v.bootMode) report.bootMode = String(v.bootMode);
  if (v.architecture) report.architecture = String(v.architecture);
  if (v.filesystems !== undefined) {
    report.filesystems = items(v.filesystems).map((fs) => {
      const { partition, encrypted, ...rest } = strings(fs);
      return { ...(rest as { type: string }), ...(partition ? { partition: Number(partition) } : {}), ...(encrypted === 'true' ? { encrypted: true } : {}) };
    });
  }
  if (v.findings !== undefined) report.findings = items(v.findings).map((f) => strings(f) as unknown as NonNullable<ValidationReport['findings']>[number]);
  if (v.verdict) report.verdict = { accepted: v.verdict.accepted === 'true', message: str(v.verdict.message) ?? '' };
  if (v.bytesRead !== undefined) report.bytesRead = num(v.bytesRead);
  return report;
}

/** The <bootCheck> element back as the task keeps it. */
export function bootCheckView(v: Record<string, any> | undefined): BootCheckResult | undefined {
  if (!v || typeof v !== 'object') return undefined;
  return {
    booted: v.booted === 'true',
    reached: str(v.reached) ?? 'none',
    message: str(v.message) ?? '',
    accelerator: str(v.accelerator) ?? '',
    elapsedMs: num(v.elapsedMs) ?? 0,
    console: (Array.isArray(v.console?.item) ? v.console.item : []).map((line: unknown) => String(line)),
  };
}

/** What one disk (an ImportVolume, or a volume of an ImportInstance) says of its image and volume. */
function diskView(disk: Record<string, any>) {
  return {
    progress: num(disk.progress),
    format: str(disk.image?.format),
    imageSize: num(disk.image?.size),
    bytesConverted: num(disk.bytesConverted),
    volumeId: str(disk.volume?.id),
    volumeSizeGiB: num(disk.volume?.size),
    imageSha256: str(disk.imageSha256) ?? str(disk.image?.checksum),
  };
}

export function conversionTaskView(item: Record<string, any>): ConversionTaskView {
  const instance = item.importInstance;
  // The first volume of an import-instance task is its boot disk; the fields below describe it.
  const volumes: Record<string, any>[] = instance?.volumes?.item ?? [];
  const detail = item.importVolume ?? volumes[0] ?? {};
  return {
    conversionTaskId: String(item.conversionTaskId),
    state: String(item.state),
    statusMessage: str(item.statusMessage) ?? '',
    expirationTime: str(item.expirationTime),
    ...diskView(detail),
    imageLocation: str(detail.imageLocation),
    description: instance ? str(instance.description) : str(detail.description),
    ...(detail.validation ? { validation: validationView(detail.validation) } : {}),
    ...(detail.bootCheck ? { bootCheck: bootCheckView(detail.bootCheck) } : {}),
    ...(instance
      ? {
          instanceId: str(instance.instanceId),
          platform: str(instance.platform),
          volumeDescription: str(detail.description),
          ...strings({ kernelId: instance.kernelId, ramdiskId: instance.ramdiskId, virtualizationType: instance.virtualizationType, layout: instance.layout }),
        }
      : {}),
    ...(volumes.length > 1
      ? {
          disks: volumes.map((v) => ({
            status: String(v.status ?? ''),
            statusMessage: str(v.statusMessage),
            ...diskView(v),
            description: str(v.description),
          })),
        }
      : {}),
  };
}

export async function describeConversionTasks(ec2: Ec2Client, ids: string[]): Promise<ConversionTaskView[]> {
  const params: Record<string, string> = {};
  ids.forEach((id, i) => (params[`ConversionTaskId.${i + 1}`] = id));
  const response = await ec2.call('DescribeConversionTasks', params);
  const items: Record<string, any>[] = response.conversionTasks?.item ?? [];
  return items.map(conversionTaskView);
}

export function formatConversionTask(task: ConversionTaskView): string {
  const lines = [
    `${task.conversionTaskId}  ${task.state}${task.progress !== undefined ? `  ${task.progress}%` : ''}${task.statusMessage ? `  ${task.statusMessage}` : ''}`,
  ];
  const field = (name: string, value: unknown) => value !== undefined && lines.push(`  ${name.padEnd(16)}${value}`);
  field('instance', task.instanceId && `${task.instanceId}${task.platform ? ` (${task.platform})` : ''}`);
  field('kernel', task.kernelId && [task.kernelId, task.ramdiskId && `ramdisk ${task.ramdiskId}`].filter(Boolean).join('  '));
  field('boots', task.virtualizationType || task.layout ? [task.virtualizationType, task.layout && `${task.layout} layout`].filter(Boolean).join(', ') : undefined);
  field('description', task.description);
  field('format', task.format);
  field('image size', task.imageSize);
  field('bytes converted', task.bytesConverted);
  field('volume', task.volumeId && `${task.volumeId} (${task.volumeSizeGiB} GiB)`);
  field('image location', task.imageLocation);
  field('image sha256', task.imageSha256);
  field('validation', task.validation?.verdict?.message);
  field('boot check', task.bootCheck?.message);
  field('expires', task.expirationTime);
  for (const [i, disk] of (task.disks ?? []).entries()) {
    field(`disk ${i + 1}`, [disk.status, disk.format, disk.volumeId && `${disk.volumeId} (${disk.volumeSizeGiB} GiB)`, disk.description, disk.status !== 'completed' && disk.statusMessage].filter(Boolean).join('  '));
  }
  return lines.join('\n');
}

export async function cancelConversionTask(ec2: Ec2Client, id: string, reason?: string): Promise<void> {
  await ec2.call('CancelConversionTask', { ConversionTaskId: id, ReasonMessage: reason });
}
