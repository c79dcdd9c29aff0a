/** export-instance, describe-export-tasks, cancel-export-task: EC2 export answers as plain records and text. */
import type { Ec2Client } from '../ec2-client';

export interface ExportTaskView {
  exportTaskId: string;
  state: string;
  statusMessage: string;
  description?: string;
  instanceId?: string;
  targetEnvironment?: string;
  diskImageFormat?: string;
  containerFormat?: string;
  s3Bucket?: string;
  s3Key?: string;
  /** Ours (EC2's model has none for exports): percent, and bytes of the disk written so far. */
  progress?: number;
  bytesConverted?: number;
}

export interface ExportInstanceOptions {
  instanceId: string;
  targetEnvironment: 'citrix' | 'vmware' | 'microsoft';
  diskImageFormat?: 'VMDK' | 'VHD' | 'RAW';
  containerFormat?: 'ova';
  /** The extension parameter ExportToS3.X-ImagingVhdType. */
  vhdType?: 'dynamic' | 'fixed';
  bucket: string;
  prefix?: string;
  description?: string;
}

const num = (v: unknown) => (v === undefined || v === '' ? undefined : Number(v));
const str = (v: unknown) => (v === undefined || v === '' ? undefined : String(v));

export function exportTaskView(item: Record<string, any>): ExportTaskView {
  return {
    exportTaskId: String(item.exportTaskId),
    state: String(item.state),
    statusMessage: str(item.statusMessage) ?? '',
    description: str(item.description),
    instanceId: str(item.instanceExport?.instanceId),
    targetEnvironment: str(item.instanceExport?.targetEnvironment),
    diskImageFormat: str(item.exportToS3?.diskImageFormat),
    containerFormat: str(item.exportToS3?.containerFormat),
    s3Bucket: str(item.exportToS3?.s3Bucket),
    s3Key: str(item.exportToS3?.s3Key),
    progress: num(item.progress),
    bytesConverted: num(item.bytesConverted),
  };
}

export async function exportInstance(ec2: Ec2Client, o: ExportInstanceOptions): Promise<ExportTaskView> {
  const response = await ec2.call('CreateInstanceExportTask', {
    InstanceId: o.instanceId,
    TargetEnvironment: o.targetEnvironment,
    Description: o.description,
    'ExportToS3.DiskImageFormat': o.diskImageFormat,
    'ExportToS3.ContainerFormat': o.containerFormat,
    'ExportToS3.X-ImagingVhdType': o.vhdType,
    'ExportToS3.S3Bucket': o.bucket,
    'ExportToS3.S3Prefix': o.prefix,
  });
  return exportTaskView(response.exportTask ?? {});
}

export async function describeExportTasks(ec2: Ec2Client, ids: string[]): Promise<ExportTaskView[]> {
  const params: Record<string, string> = {};
  ids.forEach((id, i) => (params[`ExportTaskId.${i + 1}`] = id));
  const response = await ec2.call('DescribeExportTasks', params);
  const items: Record<string, any>[] = response.exportTaskSet?.item ?? [];
  return items.map(exportTaskView);
}

export async function cancelExportTask(ec2: Ec2Client, id: string): Promise<void> {
  await ec2.call('CancelExportTask', { ExportTaskId: id });
}

export function formatExportTask(task: ExportTaskView): string {
  const lines = [
    `${task.exportTaskId}  ${task.state}${task.progress !== undefined ? `  ${task.progress}%` : ''}${task.statusMessage ? `  ${task.statusMessage}` : ''}`,
  ];
  const field = (name: string, value: unknown) => value !== undefined && lines.push(`  ${name.padEnd(16)}${value}`);
  field('instance', task.instanceId && `${task.instanceId} (${task.targetEnvironment})`);
  field('description', task.description);
  field('format', task.diskImageFormat && `${task.diskImageFormat}${task.containerFormat ? ` in ${task.containerFormat}` : ''}`);
  field('location', task.s3Bucket && `s3://${task.s3Bucket}/${task.s3Key}`);
  field('bytes exported', task.bytesConverted);
  return lines.join('\n');
}

/** Follows an export task until it ends, with a progress bar on stderr when asked. */
export async function waitForExportTask(ec2: Ec2Client, taskId: string, options: { progress: boolean; pollMs?: number }): Promise<ExportTaskView> {
  const { Presets, SingleBar } = await import('cli-progress');
  const bar = options.progress ? new SingleBar({ format: 'exporting |{bar}| {percentage}% | {state} {message}', hideCursor: true }, Presets.shades_classic) : undefined;
  bar?.start(100, 0, { state: 'active', message: '' });
  try {
    for (;;) {
      const [task] = await describeExportTasks(ec2, [taskId]);
      bar?.update(task.progress ?? 0, { state: task.state, message: task.statusMessage });
      if (task.state === 'completed' || task.state === 'cancelled') return task;
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1000));
    }
  } finally {
    bar?.stop();
  }
}
