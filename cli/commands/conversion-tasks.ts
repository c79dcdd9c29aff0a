/** describe-conversion-tasks and cancel-conversion-task: EC2 answers turned into plain records and text. */
import type { Ec2Client } from '../ec2-client';

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
  /** Import-instance tasks with several disks: each one, the boot disk first. */
  disks?: DiskView[];
}

export interface DiskView {
  status: string;
  format?: string;
  volumeId?: string;
  volumeSizeGiB?: number;
  description?: string;
}

const num = (v: unknown) => (v === undefined || v === '' ? undefined : Number(v));
const str = (v: unknown) => (v === undefined || v === '' ? undefined : String(v));

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
    progress: num(detail.progress),
    format: str(detail.image?.format),
    imageSize: num(detail.image?.size),
    bytesConverted: num(detail.bytesConverted),
    volumeId: str(detail.volume?.id),
    volumeSizeGiB: num(detail.volume?.size),
    imageLocation: str(detail.imageLocation),
    imageSha256: str(detail.imageSha256) ?? str(detail.image?.checksum),
    description: instance ? str(instance.description) : str(detail.description),
    ...(instance
      ? { instanceId: str(instance.instanceId), platform: str(instance.platform), volumeDescription: str(detail.description) }
      : {}),
    ...(volumes.length > 1
      ? {
          disks: volumes.map((v) => ({
            status: String(v.status ?? ''),
            format: str(v.image?.format),
            volumeId: str(v.volume?.id),
            volumeSizeGiB: num(v.volume?.size),
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
  field('description', task.description);
  field('format', task.format);
  field('image size', task.imageSize);
  field('bytes converted', task.bytesConverted);
  field('volume', task.volumeId && `${task.volumeId} (${task.volumeSizeGiB} GiB)`);
  field('image location', task.imageLocation);
  field('image sha256', task.imageSha256);
  field('expires', task.expirationTime);
  for (const [i, disk] of (task.disks ?? []).entries()) {
    field(`disk ${i + 1}`, [disk.status, disk.format, disk.volumeId && `${disk.volumeId} (${disk.volumeSizeGiB} GiB)`, disk.description].filter(Boolean).join('  '));
  }
  return lines.join('\n');
}

export async function cancelConversionTask(ec2: Ec2Client, id: string, reason?: string): Promise<void> {
  await ec2.call('CancelConversionTask', { ConversionTaskId: id, ReasonMessage: reason });
}
