/**
 * bundle-instance, describe-bundle-tasks and cancel-bundle-task: BundleInstance and its tasks as
 * plain records and text, with a progress bar for `--wait` like the other task commands.
 */
import type { Command } from 'commander';
import type { ClientContext, ClientFlags } from '../client-options';
import type { Ec2Client } from '../ec2-client';

export interface BundleTaskView {
  bundleId: string;
  instanceId: string;
  /** pending, bundling, storing, cancelling, complete or failed. */
  state: string;
  /** Percent, from EC2's "N%". */
  progress: number;
  bucket?: string;
  prefix?: string;
  /** Where the bundle's manifest is (bucket/prefix.manifest.xml): what RegisterImage takes. */
  manifestLocation?: string;
  startTime?: string;
  updateTime?: string;
  errorCode?: string;
  errorMessage?: string;
  /** Ours (EC2's model has none): bytes of the instance's disk bundled so far. */
  bytesBundled?: number;
}

export interface BundleInstanceOptions {
  instanceId: string;
  bucket: string;
  prefix: string;
  /** Storage.S3.AWSAccessKeyId, UploadPolicy (base64) and UploadPolicySignature, when given. */
  accessKeyId?: string;
  uploadPolicy?: string;
  uploadPolicySignature?: string;
}

const str = (v: unknown) => (v === undefined || v === '' ? undefined : String(v));

export function bundleTaskView(item: Record<string, any>): BundleTaskView {
  const bucket = str(item.storage?.S3?.bucket);
  const prefix = str(item.storage?.S3?.prefix);
  const bytes = str(item.bytesBundled);
  return {
    bundleId: String(item.bundleId),
    instanceId: String(item.instanceId),
    state: String(item.state),
    progress: Number.parseInt(String(item.progress ?? '0'), 10) || 0,
    bucket,
    prefix,
    manifestLocation: bucket && prefix ? `${bucket}/${prefix}.manifest.xml` : undefined,
    startTime: str(item.startTime),
    updateTime: str(item.updateTime),
    errorCode: str(item.error?.code),
    errorMessage: str(item.error?.message),
    bytesBundled: bytes === undefined ? undefined : Number(bytes),
  };
}

export async function bundleInstance(ec2: Ec2Client, o: BundleInstanceOptions): Promise<BundleTaskView> {
  const response = await ec2.call('BundleInstance', {
    InstanceId: o.instanceId,
    'Storage.S3.Bucket': o.bucket,
    'Storage.S3.Prefix': o.prefix,
    'Storage.S3.AWSAccessKeyId': o.accessKeyId,
    'Storage.S3.UploadPolicy': o.uploadPolicy,
    'Storage.S3.UploadPolicySignature': o.uploadPolicySignature,
  });
  return bundleTaskView(response.bundleInstanceTask ?? {});
}

export async function describeBundleTasks(ec2: Ec2Client, ids: string[]): Promise<BundleTaskView[]> {
  const params: Record<string, string> = {};
  ids.forEach((id, i) => (params[`BundleId.${i + 1}`] = id));
  const response = await ec2.call('DescribeBundleTasks', params);
  const items: Record<string, any>[] = response.bundleInstanceTasksSet?.item ?? [];
  return items.map(bundleTaskView);
}

export async function cancelBundleTask(ec2: Ec2Client, id: string): Promise<BundleTaskView> {
  const response = await ec2.call('CancelBundleTask', { BundleId: id });
  return bundleTaskView(response.bundleInstanceTask ?? {});
}

export function formatBundleTask(task: BundleTaskView): string {
  const lines = [`${task.bundleId}  ${task.state}  ${task.progress}%`];
  const field = (name: string, value: unknown) => value !== undefined && lines.push(`  ${name.padEnd(16)}${value}`);
  field('instance', task.instanceId);
  field('manifest', task.manifestLocation);
  field('error', task.errorCode && `${task.errorCode}: ${task.errorMessage ?? ''}`);
  field('bytes bundled', task.bytesBundled);
  field('started', task.startTime);
  field('updated', task.updateTime);
  return lines.join('\n');
}

const ENDED = ['complete', 'failed'];

/** Follows a bundle task until it is complete or failed, with a progress bar on stderr when asked. */
export async function waitForBundleTask(ec2: Ec2Client, bundleId: string, options: { progress: boolean; pollMs?: number }): Promise<BundleTaskView> {
  const { Presets, SingleBar } = await import('cli-progress');
  const bar = options.progress ? new SingleBar({ format: 'bundling |{bar}| {percentage}% | {state}', hideCursor: true }, Presets.shades_classic) : undefined;
  bar?.start(100, 0, { state: 'pending' });
  try {
    for (;;) {
      const [task] = await describeBundleTasks(ec2, [bundleId]);
      bar?.update(task.progress, { state: task.state });
      if (ENDED.includes(task.state)) return task;
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1000));
    }
  } finally {
    bar?.stop();
  }
}

const print = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);

export function registerBundleTaskCommands(
  program: Command,
  fail: (err: unknown) => never,
  withClientFlags: (command: Command) => Command,
  clientContext: (flags: ClientFlags) => Promise<ClientContext>,
): void {
  withClientFlags(program.command('bundle-instance <instance-id>').description('bundle an imported instance\'s root volume into an S3 bucket as an EC2 image bundle (BundleInstance); register it with register-image'))
    .requiredOption('--bucket <bucket>', 'bucket the bundle is written to (must exist)')
    .requiredOption('--prefix <prefix>', 'the bundle is <prefix>.manifest.xml and <prefix>.part.NN')
    .option('--upload-access-key-id <id>', 'Storage.S3.AWSAccessKeyId (one of your keys; with --upload-policy, the key that signed it)')
    .option('--upload-policy <base64>', 'Storage.S3.UploadPolicy, base64')
    .option('--upload-policy-signature <base64>', 'Storage.S3.UploadPolicySignature: HMAC-SHA1 of the policy with that key\'s secret')
    .option('--no-progress', 'no progress bar')
    .option('--wait', 'follow the task until it is complete or failed (exit 1 if failed)')
    .option('--json', 'print the task as JSON')
    .action(async (instanceId: string, opts: ClientFlags & { bucket: string; prefix: string; uploadAccessKeyId?: string; uploadPolicy?: string; uploadPolicySignature?: string; progress: boolean; wait?: boolean; json?: boolean }) => {
      try {
        const ctx = await clientContext(opts);
        let task = await bundleInstance(ctx.ec2, {
          instanceId, bucket: opts.bucket, prefix: opts.prefix,
          accessKeyId: opts.uploadAccessKeyId, uploadPolicy: opts.uploadPolicy, uploadPolicySignature: opts.uploadPolicySignature,
        });
        if (opts.wait) task = await waitForBundleTask(ctx.ec2, task.bundleId, { progress: opts.progress && !opts.json && process.stderr.isTTY === true });
        print(opts.json ? JSON.stringify(task, null, 2) : opts.wait ? formatBundleTask(task) : `${task.bundleId}\t${task.state}\t${task.manifestLocation}`);
        if (opts.wait && task.state !== 'complete') process.exitCode = 1;
      } catch (err) {
        fail(err);
      }
    });

  withClientFlags(program.command('describe-bundle-tasks [ids...]').description('show bundle tasks (BundleInstance)'))
    .option('--wait', 'follow the one task named until it ends, with a progress bar')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print JSON')
    .action(async (ids: string[], opts: ClientFlags & { json?: boolean; wait?: boolean; progress: boolean }) => {
      try {
        const ctx = await clientContext(opts);
        if (opts.wait && (ids ?? []).length !== 1) throw new Error('--wait follows one task: name exactly one bundle id');
        const tasks = opts.wait
          ? [await waitForBundleTask(ctx.ec2, ids[0], { progress: opts.progress && !opts.json && process.stderr.isTTY === true })]
          : await describeBundleTasks(ctx.ec2, ids ?? []);
        if (opts.json) print(JSON.stringify(tasks, null, 2));
        else if (tasks.length) print(tasks.map(formatBundleTask).join('\n'));
      } catch (err) {
        fail(err);
      }
    });

  withClientFlags(program.command('cancel-bundle-task <id>').description('cancel a bundle task; what it wrote into the bucket is removed'))
    .action(async (id: string, opts: ClientFlags) => {
      try {
        const ctx = await clientContext(opts);
        const task = await cancelBundleTask(ctx.ec2, id);
        print(`${task.bundleId}\t${task.state}`);
      } catch (err) {
        fail(err);
      }
    });
}
