/**
 * `imaging export-image` and `imaging describe-export-image-tasks`: ExportImage and
 * DescribeExportImageTasks as plain records and text, with a progress bar while a task is
 * followed, like the export-instance and import commands. CancelExportTask (`cancel-export-task`)
 * cancels these tasks too.
 */
import { Option, type Command } from 'commander';
import type { ClientContext, ClientFlags } from '../client-options';
import type { Ec2Client } from '../ec2-client';

export interface ExportImageTaskView {
  exportImageTaskId: string;
  status: string;
  statusMessage?: string;
  progress?: number;
  imageId?: string;
  description?: string;
  diskImageFormat?: string;
  s3Bucket?: string;
  s3Prefix?: string;
  /** Ours (EC2's model has neither): the object's key, and bytes of the disk written so far. */
  s3Key?: string;
  bytesConverted?: number;
  roleName?: string;
  tags?: Record<string, string>;
}

export interface ExportImageOptions {
  imageId: string;
  diskImageFormat: 'VMDK' | 'VHD' | 'RAW';
  /** The extension parameter X-ImagingVhdType. */
  vhdType?: 'dynamic' | 'fixed';
  bucket: string;
  prefix?: string;
  description?: string;
  roleName?: string;
  clientToken?: string;
  /** key=value tags of the export-image-task. */
  tags?: string[];
}

const str = (v: unknown) => (v === undefined || v === '' ? undefined : String(v));
const num = (v: unknown) => (v === undefined || v === '' ? undefined : Number(v));

export function exportImageTaskView(item: Record<string, any>): ExportImageTaskView {
  const tags = (item.tagSet?.item ?? []) as { key: string; value?: string }[];
  const view: ExportImageTaskView = {
    exportImageTaskId: String(item.exportImageTaskId),
    status: String(item.status),
    statusMessage: str(item.statusMessage),
    progress: num(item.progress),
    imageId: str(item.imageId),
    description: str(item.description),
    diskImageFormat: str(item.diskImageFormat),
    s3Bucket: str(item.s3ExportLocation?.s3Bucket),
    s3Prefix: str(item.s3ExportLocation?.s3Prefix),
    s3Key: str(item.s3Key),
    bytesConverted: num(item.bytesConverted),
    roleName: str(item.roleName),
    ...(tags.length ? { tags: Object.fromEntries(tags.map((t) => [t.key, t.value ?? ''])) } : {}),
  };
  return Object.fromEntries(Object.entries(view).filter(([, v]) => v !== undefined)) as unknown as ExportImageTaskView;
}

export function exportImageParams(o: ExportImageOptions): Record<string, string | undefined> {
  const params: Record<string, string | undefined> = {
    ImageId: o.imageId,
    DiskImageFormat: o.diskImageFormat,
    'X-ImagingVhdType': o.vhdType,
    'S3ExportLocation.S3Bucket': o.bucket,
    'S3ExportLocation.S3Prefix': o.prefix || undefined,
    Description: o.description,
    RoleName: o.roleName,
    ClientToken: o.clientToken,
  };
  if (o.tags?.length) {
    params['TagSpecification.1.ResourceType'] = 'export-image-task';
    o.tags.forEach((tag, i) => {
      const eq = tag.indexOf('=');
      params[`TagSpecification.1.Tag.${i + 1}.Key`] = eq < 0 ? tag : tag.slice(0, eq);
      params[`TagSpecification.1.Tag.${i + 1}.Value`] = eq < 0 ? '' : tag.slice(eq + 1);
    });
  }
  return params;
}

export async function exportImage(ec2: Ec2Client, o: ExportImageOptions): Promise<ExportImageTaskView> {
  return exportImageTaskView(await ec2.call('ExportImage', exportImageParams(o)));
}

/** Every page of DescribeExportImageTasks. */
export async function describeExportImageTasks(ec2: Ec2Client, ids: string[], filters: Record<string, string[]> = {}): Promise<ExportImageTaskView[]> {
  const params: Record<string, string> = {};
  ids.forEach((id, i) => (params[`ExportImageTaskId.${i + 1}`] = id));
  Object.entries(filters).forEach(([name, values], i) => {
    params[`Filter.${i + 1}.Name`] = name;
    values.forEach((value, j) => (params[`Filter.${i + 1}.Value.${j + 1}`] = value));
  });
  const views: ExportImageTaskView[] = [];
  let token: string | undefined;
  do {
    const response = await ec2.call('DescribeExportImageTasks', { ...params, ...(token ? { NextToken: token } : {}) });
    views.push(...((response.exportImageTaskSet?.item ?? []) as Record<string, any>[]).map(exportImageTaskView));
    token = str(response.nextToken);
  } while (token);
  return views;
}

export function formatExportImageTask(task: ExportImageTaskView): string {
  const lines = [`${task.exportImageTaskId}  ${task.status}${task.progress !== undefined ? `  ${task.progress}%` : ''}${task.statusMessage ? `  ${task.statusMessage}` : ''}`];
  const field = (name: string, value: unknown) => value !== undefined && lines.push(`  ${name.padEnd(16)}${value}`);
  field('image', task.imageId);
  field('description', task.description);
  field('format', task.diskImageFormat);
  field('location', task.s3Bucket && (task.s3Key ? `s3://${task.s3Bucket}/${task.s3Key}` : `s3://${task.s3Bucket}/${task.s3Prefix ?? ''}`));
  field('bytes exported', task.bytesConverted);
  if (task.tags) field('tags', Object.entries(task.tags).map(([k, v]) => `${k}=${v}`).join(', '));
  return lines.join('\n');
}

/** Follows an export image task until it is completed or deleted, with a progress bar on stderr when asked. */
export async function waitForExportImageTask(ec2: Ec2Client, taskId: string, options: { progress: boolean; pollMs?: number }): Promise<ExportImageTaskView> {
  const { Presets, SingleBar } = await import('cli-progress');
  const bar = options.progress ? new SingleBar({ format: 'exporting |{bar}| {percentage}% | {status} {message}', hideCursor: true }, Presets.shades_classic) : undefined;
  bar?.start(100, 0, { status: 'active', message: '' });
  try {
    for (;;) {
      const [task] = await describeExportImageTasks(ec2, [taskId]);
      bar?.update(task.status === 'completed' ? 100 : task.progress ?? 0, { status: task.status, message: task.statusMessage ?? '' });
      if (task.status === 'completed' || task.status === 'deleted') return task;
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1000));
    }
  } finally {
    bar?.stop();
  }
}

export function registerExportImageCommands(
  program: Command,
  fail: (err: unknown) => never,
  withClientFlags: (command: Command) => Command,
  clientContext: (flags: ClientFlags) => Promise<ClientContext>,
): void {
  withClientFlags(program.command('export-image <image-id>').description("export an imported image's disk into an S3 bucket (ExportImage)"))
    .addOption(new Option('--disk-image-format <format>', 'disk format').choices(['VMDK', 'VHD', 'RAW']).makeOptionMandatory())
    .addOption(new Option('--vhd-type <type>', 'VHD subformat (the extension parameter X-ImagingVhdType) [default: dynamic]').choices(['dynamic', 'fixed']))
    .requiredOption('--bucket <bucket>', 'bucket the export is written to (must exist)')
    .option('--prefix <prefix>', 'key prefix; the object is <prefix><export image task id>.<format>', '')
    .option('--description <text>', 'description of the export task')
    .option('--role-name <name>', 'RoleName (accepted and reported; the export writes with your own key)')
    .option('--client-token <token>', 'idempotency token')
    .option('--tag <key=value...>', 'tags of the export image task')
    .option('--no-progress', 'no progress bar')
    .option('--wait', 'follow the task until it is completed or deleted (exit 1 if deleted)')
    .option('--json', 'print the task as JSON')
    .action(async (imageId: string, opts) => {
      try {
        const ctx = await clientContext(opts as ClientFlags);
        let task = await exportImage(ctx.ec2, {
          imageId, diskImageFormat: opts.diskImageFormat, vhdType: opts.vhdType, bucket: opts.bucket, prefix: opts.prefix,
          description: opts.description, roleName: opts.roleName, clientToken: opts.clientToken, tags: opts.tag,
        });
        if (!opts.wait) {
          process.stdout.write(opts.json ? JSON.stringify(task, null, 2) + '\n' : `${task.exportImageTaskId}\ts3://${task.s3Bucket}/${task.s3Key ?? task.s3Prefix ?? ''}\n`);
          return;
        }
        process.stderr.write(`${task.exportImageTaskId}\n`);
        task = await waitForExportImageTask(ctx.ec2, task.exportImageTaskId, { progress: opts.progress && !opts.json && process.stderr.isTTY === true });
        process.stdout.write(opts.json ? JSON.stringify(task, null, 2) + '\n' : formatExportImageTask(task) + '\n');
        if (task.status !== 'completed') process.exitCode = 1;
      } catch (err) {
        fail(err);
      }
    });

  withClientFlags(program.command('describe-export-image-tasks [ids...]').description('show export image tasks'))
    .addOption(new Option('--status <status>', 'only tasks in this status (the task-state filter)').choices(['active', 'completed', 'deleting', 'deleted']))
    .option('--wait', 'follow the one task named until it ends, with a progress bar')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print JSON')
    .action(async (ids: string[], opts) => {
      try {
        const ctx = await clientContext(opts as ClientFlags);
        if (opts.wait && (ids ?? []).length !== 1) throw new Error('--wait follows one task: name exactly one export image task id');
        const tasks = opts.wait
          ? [await waitForExportImageTask(ctx.ec2, ids[0], { progress: opts.progress && !opts.json && process.stderr.isTTY === true })]
          : await describeExportImageTasks(ctx.ec2, ids ?? [], opts.status ? { 'task-state': [opts.status] } : {});
        process.stdout.write(opts.json ? JSON.stringify(tasks, null, 2) + '\n' : tasks.map(formatExportImageTask).join('\n') + (tasks.length ? '\n' : ''));
      } catch (err) {
        fail(err);
      }
    });
}
