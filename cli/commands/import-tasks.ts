/**
 * `imaging import-image`, `import-snapshot`, `describe-import-image-tasks`,
 * `describe-import-snapshot-tasks`, `cancel-import-task` and `delete-disk-image`: the EC2 import
 * task calls, with the upload of a local file to the caller's bucket and progress bars like the
 * conversion-task commands.
 */
import { createReadStream, statSync } from 'fs';
import { basename } from 'path';
import { Command, Option } from 'commander';
import type { ClientContext, ClientFlags } from '../client-options';
import type { Ec2Client } from '../ec2-client';
import type { BootCheckResult, ValidationReport } from '../../tasks/task';
import { bootCheckView, validationView } from './conversion-tasks';

export interface ImportTaskView {
  importTaskId: string;
  status: string;
  statusMessage?: string;
  progress?: number;
  imageId?: string;
  snapshotId?: string;
  format?: string;
  diskImageSize?: number;
  description?: string;
  source?: string;
  tags?: Record<string, string>;
  /** An image's Platform, Architecture and BootMode: as requested, filled in from the guest report. */
  platform?: string;
  architecture?: string;
  bootMode?: string;
  /** What the validate stage found on the disk (its guest report), once it has run. */
  validation?: ValidationReport;
  /** How far the disk booted under qemu (the boot-check stage), when it was booted. */
  bootCheck?: BootCheckResult;
}

const str = (v: unknown) => (v === undefined || v === '' ? undefined : String(v));
const num = (v: unknown) => (v === undefined || v === '' ? undefined : Number(v));

export function importTaskView(item: Record<string, any>, kind: 'image' | 'snapshot'): ImportTaskView {
  const detail = kind === 'image' ? item.snapshotDetailSet?.item?.[0] ?? {} : item.snapshotTaskDetail ?? {};
  const top = kind === 'image' ? item : detail;
  const bucket = detail.userBucket;
  const tags = (item.tagSet?.item ?? []) as { key: string; value: string }[];
  const view: ImportTaskView = {
    importTaskId: String(item.importTaskId),
    status: String(top.status),
    statusMessage: str(top.statusMessage),
    progress: num(top.progress),
    imageId: str(item.imageId),
    snapshotId: str(detail.snapshotId),
    format: str(detail.format),
    diskImageSize: num(detail.diskImageSize),
    description: str(item.description),
    source: bucket ? `s3://${bucket.s3Bucket}/${bucket.s3Key}` : str(detail.url),
    ...(tags.length ? { tags: Object.fromEntries(tags.map((t) => [t.key, t.value ?? ''])) } : {}),
    platform: kind === 'image' ? str(item.platform) : undefined,
    architecture: kind === 'image' ? str(item.architecture) : undefined,
    bootMode: kind === 'image' ? str(item.bootMode) : undefined,
    validation: validationView(item.validation),
    bootCheck: bootCheckView(item.bootCheck),
  };
  return Object.fromEntries(Object.entries(view).filter(([, v]) => v !== undefined)) as unknown as ImportTaskView;
}

export async function describeImportTasks(ec2: Ec2Client, kind: 'image' | 'snapshot', ids: string[]): Promise<ImportTaskView[]> {
  const params: Record<string, string> = {};
  ids.forEach((id, i) => (params[`ImportTaskId.${i + 1}`] = id));
  const action = kind === 'image' ? 'DescribeImportImageTasks' : 'DescribeImportSnapshotTasks';
  const views: ImportTaskView[] = [];
  let token: string | undefined;
  do {
    const response = await ec2.call(action, { ...params, ...(token ? { NextToken: token } : {}) });
    const set = kind === 'image' ? response.importImageTaskSet : response.importSnapshotTaskSet;
    views.push(...((set?.item ?? []) as Record<string, any>[]).map((item) => importTaskView(item, kind)));
    token = str(response.nextToken);
  } while (token);
  return views;
}

export function formatImportTask(task: ImportTaskView): string {
  const lines = [`${task.importTaskId}  ${task.status}${task.progress !== undefined ? `  ${task.progress}%` : ''}${task.statusMessage ? `  ${task.statusMessage}` : ''}`];
  const field = (name: string, value: unknown) => value !== undefined && lines.push(`  ${name.padEnd(16)}${value}`);
  field('image', task.imageId);
  field('snapshot', task.snapshotId);
  field('description', task.description);
  field('format', task.format);
  field('source', task.source);
  field('disk image size', task.diskImageSize);
  field('platform', task.platform);
  field('architecture', task.architecture);
  field('boot mode', task.bootMode);
  field('validation', task.validation?.verdict?.message);
  field('boot check', task.bootCheck?.message);
  if (task.tags) field('tags', Object.entries(task.tags).map(([k, v]) => `${k}=${v}`).join(', '));
  return lines.join('\n');
}

/** Follows an import task until it is completed or deleted, with a progress bar. */
export async function waitForImportTask(ec2: Ec2Client, kind: 'image' | 'snapshot', taskId: string, options: { progress: boolean; pollMs?: number }): Promise<ImportTaskView> {
  const { Presets, SingleBar } = await import('cli-progress');
  const bar = options.progress ? new SingleBar({ format: 'importing |{bar}| {percentage}% | {status} {message}', hideCursor: true }, Presets.shades_classic) : undefined;
  bar?.start(100, 0, { status: 'active', message: '' });
  try {
    for (;;) {
      const [task] = await describeImportTasks(ec2, kind, [taskId]);
      bar?.update(task.status === 'completed' ? 100 : task.progress ?? 0, { status: task.status, message: task.statusMessage ?? '' });
      if (task.status === 'completed' || task.status === 'deleted') return task;
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1000));
    }
  } finally {
    bar?.stop();
  }
}

/** A local file is uploaded to --bucket first (multipart, with a progress bar); s3://bucket/key is used as it is. */
async function sourceParams(ctx: ClientContext, source: string, opts: Record<string, any>, prefix: string): Promise<Record<string, string>> {
  const s3 = /^s3:\/\/([^/]+)\/(.+)$/.exec(source);
  if (s3) return { [`${prefix}UserBucket.S3Bucket`]: s3[1], [`${prefix}UserBucket.S3Key`]: s3[2] };
  if (/^https?:\/\//.test(source)) return { [`${prefix}Url`]: source };
  if (!opts.bucket) throw new Error('a local file is uploaded first: give --bucket (or pass s3://bucket/key)');
  const size = statSync(source).size;
  const key = opts.key ?? basename(source);
  const { CreateBucketCommand, HeadBucketCommand } = await import('@aws-sdk/client-s3');
  await ctx.s3.send(new HeadBucketCommand({ Bucket: opts.bucket })).catch(() => ctx.s3.send(new CreateBucketCommand({ Bucket: opts.bucket })));
  const { Upload } = await import('@aws-sdk/lib-storage');
  const { Presets, SingleBar } = await import('cli-progress');
  const showBar = opts.progress && !opts.json && process.stderr.isTTY === true;
  const bar = showBar ? new SingleBar({ format: 'uploading |{bar}| {percentage}% | {value}/{total} bytes', hideCursor: true }, Presets.shades_classic) : undefined;
  bar?.start(size, 0);
  try {
    const upload = new Upload({ client: ctx.s3, params: { Bucket: opts.bucket, Key: key, Body: createReadStream(source), ContentLength: size }, partSize: 16 * 1024 * 1024, queueSize: 4 });
    upload.on('httpUploadProgress', (p) => bar?.update(p.loaded ?? 0));
    await upload.done();
  } finally {
    bar?.stop();
  }
  return { [`${prefix}UserBucket.S3Bucket`]: opts.bucket, [`${prefix}UserBucket.S3Key`]: key };
}

const FORMATS = ['RAW', 'VMDK', 'VHD', 'VHDX', 'QCOW2', 'OVA'];

function withImportFlags(command: Command): Command {
  return command
    .addOption(new Option('--format <format>', 'disk image format').choices([...FORMATS, ...FORMATS.map((f) => f.toLowerCase())]).makeOptionMandatory())
    .option('--bucket <bucket>', 'bucket to upload a local file to (created if missing)')
    .option('--key <key>', 'object key of the upload [default: the file name]')
    .option('--description <text>', 'task description')
    .option('--disk-description <text>', 'description of the disk')
    .option('--client-token <token>', 'idempotency token')
    .option('--tag <key=value...>', 'tags of the import task')
    .option('--no-progress', 'no progress bars')
    .option('--wait', 'follow the task until it is completed or deleted (exit 1 if deleted)')
    .option('--json', 'print JSON');
}

function tagParams(tags: string[] | undefined, resourceType: string): Record<string, string> {
  if (!tags?.length) return {};
  const out: Record<string, string> = { 'TagSpecification.1.ResourceType': resourceType };
  tags.forEach((t, i) => {
    const eq = t.indexOf('=');
    out[`TagSpecification.1.Tag.${i + 1}.Key`] = eq < 0 ? t : t.slice(0, eq);
    out[`TagSpecification.1.Tag.${i + 1}.Value`] = eq < 0 ? '' : t.slice(eq + 1);
  });
  return out;
}

export function registerImportTaskCommands(
  program: Command,
  fail: (err: unknown) => never,
  withClientFlags: (command: Command) => Command,
  clientContext: (flags: ClientFlags) => Promise<ClientContext>,
): void {
  async function report(ctx: ClientContext, kind: 'image' | 'snapshot', item: Record<string, any>, opts: Record<string, any>) {
    const created = importTaskView(item, kind);
    process.stdout.write(opts.json && !opts.wait ? JSON.stringify(created, null, 2) + '\n' : opts.wait ? '' : `${created.importTaskId}\n`);
    if (!opts.wait) return;
    process.stderr.write(`${created.importTaskId}\n`);
    const done = await waitForImportTask(ctx.ec2, kind, created.importTaskId, { progress: opts.progress && !opts.json && process.stderr.isTTY === true });
    process.stdout.write(opts.json ? JSON.stringify(done, null, 2) + '\n' : `${formatImportTask(done)}\n`);
    if (done.status !== 'completed') process.exitCode = 1;
  }

  withImportFlags(withClientFlags(program.command('import-image <source>').description('import a disk (local file, s3://bucket/key or URL) as an image: ImportImage')))
    .addOption(new Option('--architecture <arch>', 'image architecture').choices(['i386', 'x86_64', 'arm64']))
    .addOption(new Option('--platform <platform>', 'guest platform').choices(['Linux', 'Windows']))
    .addOption(new Option('--boot-mode <mode>', 'boot mode').choices(['legacy-bios', 'uefi', 'uefi-preferred']))
    .addOption(new Option('--license-type <type>', 'license type').choices(['AWS', 'BYOL', 'Auto']))
    .option('--boot-check', 'boot the converted disk under qemu before it becomes an image (extension parameter BootCheck=true)')
    .option('--boot-check-marker <text>', 'a serial-console line that means the guest is up (BootCheckMarker) [default: a login prompt or cloud-init]')
    .option('--kernel-id <id>', 'kernel image (eki-) a partition image boots with (extension parameter KernelId)')
    .option('--ramdisk-id <id>', 'its ramdisk image (eri-) (extension parameter RamdiskId)')
    .addOption(new Option('--virtualization-type <type>', 'extension parameter VirtualizationType [default: paravirtual with a kernel, else hvm]').choices(['paravirtual', 'hvm']))
    .addOption(new Option('--layout <layout>', 'the disk is a whole disk or one bare filesystem (extension parameter Layout) [default: what the disk is]').choices(['disk', 'partition']))
    .action(async (source: string, opts) => {
      try {
        const ctx = await clientContext(opts as ClientFlags);
        const params = {
          ...(await sourceParams(ctx, source, opts, 'DiskContainer.1.')),
          'DiskContainer.1.Format': String(opts.format).toUpperCase(),
          'DiskContainer.1.Description': opts.diskDescription,
          Description: opts.description,
          Architecture: opts.architecture,
          Platform: opts.platform,
          BootMode: opts.bootMode,
          LicenseType: opts.licenseType,
          BootCheck: opts.bootCheck || opts.bootCheckMarker ? 'true' : undefined,
          BootCheckMarker: opts.bootCheckMarker,
          KernelId: opts.kernelId,
          RamdiskId: opts.ramdiskId,
          VirtualizationType: opts.virtualizationType,
          Layout: opts.layout,
          ClientToken: opts.clientToken,
          ...tagParams(opts.tag, 'import-image-task'),
        };
        await report(ctx, 'image', await ctx.ec2.call('ImportImage', params), opts);
      } catch (err) {
        fail(err);
      }
    });

  withImportFlags(withClientFlags(program.command('import-snapshot <source>').description('import a disk (local file, s3://bucket/key or URL) as a snapshot: ImportSnapshot')))
    .action(async (source: string, opts) => {
      try {
        const ctx = await clientContext(opts as ClientFlags);
        const params = {
          ...(await sourceParams(ctx, source, opts, 'DiskContainer.')),
          'DiskContainer.Format': String(opts.format).toUpperCase(),
          'DiskContainer.Description': opts.diskDescription,
          Description: opts.description,
          ClientToken: opts.clientToken,
          ...tagParams(opts.tag, 'import-snapshot-task'),
        };
        await report(ctx, 'snapshot', await ctx.ec2.call('ImportSnapshot', params), opts);
      } catch (err) {
        fail(err);
      }
    });

  for (const kind of ['image', 'snapshot'] as const) {
    withClientFlags(program.command(`describe-import-${kind}-tasks [ids...]`).description(`show import ${kind} tasks`))
      .option('--json', 'print JSON')
      .action(async (ids: string[], opts) => {
        try {
          const ctx = await clientContext(opts as ClientFlags);
          const tasks = await describeImportTasks(ctx.ec2, kind, ids ?? []);
          process.stdout.write(opts.json ? JSON.stringify(tasks, null, 2) + '\n' : tasks.map(formatImportTask).join('\n') + (tasks.length ? '\n' : ''));
        } catch (err) {
          fail(err);
        }
      });
  }

  withClientFlags(program.command('cancel-import-task <id>').description('cancel an import image or snapshot task'))
    .option('--reason <text>', 'reason recorded on the task')
    .option('--json', 'print JSON')
    .action(async (id: string, opts) => {
      try {
        const ctx = await clientContext(opts as ClientFlags);
        const out = await ctx.ec2.call('CancelImportTask', { ImportTaskId: id, CancelReason: opts.reason });
        const result = { importTaskId: String(out.importTaskId), previousState: str(out.previousState), state: str(out.state) };
        process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + '\n' : `${result.importTaskId}  ${result.previousState} -> ${result.state}\n`);
      } catch (err) {
        fail(err);
      }
    });

  withClientFlags(program.command('delete-disk-image').description("remove an upload's parts and its import manifest through the manifest's delete URLs (as euca-delete-disk-image)"))
    .requiredOption('--manifest-url <url>', 'presigned GET URL of the import manifest')
    .option('--json', 'print JSON')
    .action(async (opts) => {
      try {
        const result = await deleteDiskImage(opts.manifestUrl);
        process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + '\n' : `deleted ${result.partsDeleted} parts${result.manifestDeleted ? ' and the manifest' : ''}\n`);
        if (result.failures.length) {
          process.stderr.write(result.failures.map((f) => `error: ${f}`).join('\n') + '\n');
          process.exitCode = 1;
        }
      } catch (err) {
        fail(err);
      }
    });
}

/** Fetches the manifest, DELETEs every part's deleteUrl, then the manifest's self-destruct URL. */
export async function deleteDiskImage(manifestUrl: string): Promise<{ partsDeleted: number; manifestDeleted: boolean; failures: string[] }> {
  const { parseImportManifest, MAX_MANIFEST_BYTES } = await import('../../toolkit/bundle/import-manifest');
  const res = await fetch(manifestUrl);
  if (!res.ok) throw new Error(`the import manifest could not be read: HTTP ${res.status}`);
  const body = Buffer.from(await res.arrayBuffer());
  if (body.length > MAX_MANIFEST_BYTES) throw new Error(`the import manifest is larger than ${MAX_MANIFEST_BYTES} bytes`);
  const manifest = parseImportManifest(body);
  const failures: string[] = [];
  let partsDeleted = 0;
  for (const part of manifest.parts) {
    if (!part.deleteUrl) {
      failures.push(`part ${part.index} (${part.key}) has no delete URL`);
      continue;
    }
    const del = await fetch(part.deleteUrl, { method: 'DELETE' });
    if (del.ok || del.status === 404) partsDeleted++;
    else failures.push(`part ${part.index} (${part.key}): HTTP ${del.status}`);
  }
  let manifestDeleted = false;
  // The manifest goes last, and only when every part is gone: otherwise it is what lets the user try again.
  if (manifest.selfDestructUrl && failures.length === 0) {
    const del = await fetch(manifest.selfDestructUrl, { method: 'DELETE' });
    manifestDeleted = del.ok || del.status === 404;
    if (!manifestDeleted) failures.push(`manifest: HTTP ${del.status}`);
  } else if (!manifest.selfDestructUrl) failures.push('the manifest has no self-destruct URL');
  return { partsDeleted, manifestDeleted, failures };
}
