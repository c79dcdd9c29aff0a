/**
 * The `imaging` command.
 *
 * Only commander and the settings table load at start: `imaging --help` and the toolkit commands
 * must start about as fast as Node itself. Every action loads what it needs when it runs (the AWS
 * SDK, the service, the conversion engine), so keep new imports here type-only and load modules
 * inside actions with `await import(...)`.
 */
// The AWS SDK warns on every run under Node 20 about releases from 2027 on; users of the CLI
// cannot act on it, so it is silenced unless they ask for it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { Command, Option } from 'commander';
import { SERVE_SETTINGS, resolveSettings, type ServeSettings } from './settings';
import type { ClientContext, ClientFlags } from './client-options';
import type { ImportVolumeOptions } from './commands/import-volume';
// Registration only: these modules load what their commands need when the commands run.
import { registerAccountCommands } from './commands/accounts';
import { registerImportTaskCommands } from './commands/import-tasks';
import { registerBundleCommands } from './commands/bundles';
import { registerBundleTaskCommands } from './commands/bundle-tasks';
import { registerExportImageCommands } from './commands/export-image';

function fail(err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`error: ${message}\n`);
  // An error the EC2 endpoint answered with (Ec2RequestError, matched by name so that this file
  // need not load the client to recognise it) exits 2, anything else 1.
  process.exit((err as { name?: unknown } | null)?.name === 'Ec2RequestError' ? 2 : 1);
}

function withSettingFlags(command: Command): Command {
  for (const spec of SERVE_SETTINGS) {
    command.addOption(new Option(`${spec.flag} <value>`, `${spec.meaning} [env ${spec.env}; default ${spec.default}]`));
  }
  return command;
}

function settingsFrom(opts: Record<string, string>): ServeSettings {
  return resolveSettings(opts as Partial<ServeSettings>);
}

function withClientFlags(command: Command): Command {
  return command
    .option('--endpoint <url>', 'EC2 endpoint [env IMAGING_EC2_ENDPOINT, EC2_URL, AWS_ENDPOINT_URL_EC2; default http://127.0.0.1:8773/]')
    .option('--s3-endpoint <url>', 'S3 endpoint [env IMAGING_S3_ENDPOINT, S3_URL, AWS_ENDPOINT_URL_S3; default http://127.0.0.1:8774/]')
    .option('--region <name>', 'region [env AWS_REGION, AWS_DEFAULT_REGION; default us-east-1]')
    .option('--access-key-id <id>', 'access key id [default: AWS environment, profile, or ./data/credentials.json]')
    .option('--secret-access-key <secret>', 'secret access key')
    .option('--profile <name>', 'profile in ~/.aws/credentials and ~/.aws/config');
}

const program = new Command('imaging').description('Imaging Service: EC2 VM Import/Export, and the Imaging Toolkit').showHelpAfterError();

withSettingFlags(program.command('serve').description('run the whole service on this machine (EC2 endpoint, pipeline, embedded S3 and task store)')).action(async (opts) => {
  const { startService } = await import('./serve');
  const service = await startService(settingsFrom(opts)).catch(fail);
  process.stdout.write(
    [
      'Imaging Service is running.',
      `  EC2 endpoint:   ${service.ec2Endpoint}`,
      `  S3 endpoint:    ${service.s3Endpoint}`,
      `  admin endpoint: ${service.adminEndpoint} (healthz, readyz, metrics)`,
      `  data directory: ${service.dataDir}`,
      `  account:        ${service.credentials.accountId}`,
      `  access key id:  ${service.credentials.accessKeyId}`,
      `  secret key:     in ${service.dataDir}/credentials.json`,
      '',
    ].join('\n'),
  );
  const shutdown = async () => {
    await service.stop();
    process.exit(0);
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
});

withSettingFlags(program.command('gateway').description('run only the EC2 endpoint, publishing to NATS (distributed deployments)')).action(async (opts) => {
  const { startGatewayProcess } = await import('./gateway-process');
  const gateway = await startGatewayProcess(settingsFrom(opts)).catch(fail);
  process.stdout.write(`EC2 endpoint: ${gateway.url}\nadmin endpoint: ${gateway.adminUrl}\n`);
  const shutdown = async () => {
    await gateway.stop();
    process.exit(0);
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
});

/** Flags both import commands share: where to upload, how, and whether to follow the task. */
function withUploadFlags(command: Command, formatHelp = 'image format', formatRequired = true): Command {
  return withClientFlags(command)
    .addOption(new Option('--format <format>', formatHelp).choices(['RAW', 'VMDK', 'VHD', 'raw', 'vmdk', 'vhd']).makeOptionMandatory(formatRequired))
    .requiredOption('--bucket <bucket>', 'bucket to upload the parts and manifest to (created if missing)')
    .option('--prefix <prefix>', 'key prefix for the parts and manifest [default <file>.<random>/]')
    .option('--volume-size <GiB>', 'size of the volume in GiB [default: the virtual disk size rounded up]')
    .option('--part-size <MiB>', 'part size in MiB', '10')
    .option('--availability-zone <zone>', 'availability zone of the volume')
    .option('--expires <days>', 'lifetime of the presigned URLs in days (at most 7)', '7')
    .option('--concurrency <n>', 'parts uploaded at once', '4')
    .option('--no-progress', 'no progress bars')
    .option('--wait', 'follow the task until it completes or is cancelled (exit 1 if cancelled)')
    .option('--json', 'print the result as JSON');
}

/** What commander parses from withUploadFlags (camelCase keys). */
interface UploadFlags extends ClientFlags {
  format: string;
  bucket: string;
  prefix?: string;
  volumeSize?: string;
  partSize: string;
  availabilityZone?: string;
  expires: string;
  concurrency: string;
  progress: boolean;
  wait?: boolean;
  json?: boolean;
}

function uploadOptionsFrom(opts: UploadFlags, description: string | undefined): ImportVolumeOptions {
  return {
    format: String(opts.format).toUpperCase() as ImportVolumeOptions['format'],
    bucket: opts.bucket,
    prefix: opts.prefix,
    volumeSizeGiB: opts.volumeSize ? Number(opts.volumeSize) : undefined,
    partSizeMiB: Number(opts.partSize),
    description,
    availabilityZone: opts.availabilityZone,
    expiresSeconds: Math.floor(Math.min(7, Number(opts.expires)) * 86400),
    progress: opts.progress && !opts.json && process.stderr.isTTY !== false,
    concurrency: Math.max(1, Number(opts.concurrency)),
  };
}

/**
 * Prints the new task (as `line`, or JSON) and, with --wait, follows it to the end. With --json
 * and --wait only the ended task is printed, so that stdout is one JSON document.
 */
async function reportNewTask(ctx: ClientContext, opts: UploadFlags, result: { conversionTaskId: string }, line: string): Promise<void> {
  if (!(opts.json && opts.wait)) process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + '\n' : `${line}\n`);
  if (!opts.wait) return;
  const { waitForConversionTask } = await import('./commands/wait-for-task');
  const { formatConversionTask } = await import('./commands/conversion-tasks');
  const task = await waitForConversionTask(ctx.ec2, result.conversionTaskId, { progress: opts.progress && !opts.json && process.stderr.isTTY === true });
  process.stdout.write(opts.json ? JSON.stringify(task, null, 2) + '\n' : `${formatConversionTask(task)}\n`);
  if (task.state !== 'completed') process.exitCode = 1;
}

withUploadFlags(program.command('import-volume <file>').description('upload a disk image in parts with an import manifest and call ImportVolume'))
  .option('--description <text>', 'task description')
  .action(async (file: string, opts: UploadFlags & { description?: string }) => {
    try {
      const { clientContext } = await import('./client-options');
      const { importVolume } = await import('./commands/import-volume');
      const ctx = await clientContext(opts);
      const result = await importVolume(ctx, file, uploadOptionsFrom(opts, opts.description));
      await reportNewTask(ctx, opts, result, result.conversionTaskId);
    } catch (err) {
      fail(err);
    }
  });

/** The flags import-instance adds to withUploadFlags. */
interface ImportInstanceFlags {
  disk: string[];
  architecture: string;
  instanceType?: string;
  platform?: string;
  description?: string;
  diskDescription?: string;
  group?: string[];
  subnetId?: string;
  privateIpAddress?: string;
  shutdownBehavior?: string;
  bootCheck?: boolean;
  bootCheckMarker?: string;
  kernelId?: string;
  ramdiskId?: string;
  virtualizationType?: string;
  layout?: string;
}

const collect = (value: string, previous: string[]) => [...previous, value];

withUploadFlags(
  program
    .command('import-instance [files...]')
    .description('upload disk images in parts with import manifests and call ImportInstance with every one (DiskImage.N): the first disk is the boot disk, the others become volumes of the instance. Disks are the FILE arguments, then each --disk, in order'),
  'image format of every disk that does not name its own (--disk FILE,format=…)',
  false,
)
  .option('--disk <spec>', 'a further disk, or every disk: FILE[,format=RAW|VMDK|VHD][,description=TEXT][,volume-size=GiB] (repeat for each; a name with a comma as file=FILE, last)', collect, [])
  .addOption(new Option('--architecture <arch>', 'instance architecture').choices(['i386', 'x86_64', 'arm64', 'x86_64_mac', 'arm64_mac']).default('x86_64'))
  .option('--instance-type <type>', 'instance type, e.g. m5.large')
  .addOption(new Option('--platform <platform>', 'guest platform; leave out for Linux').choices(['Windows']))
  .option('--group <name...>', 'security group names')
  .option('--subnet-id <id>', 'subnet to launch in')
  .option('--private-ip-address <ip>', 'private IPv4 address in the subnet')
  .addOption(new Option('--shutdown-behavior <behavior>', 'what an instance-initiated shutdown does').choices(['stop', 'terminate']))
  .option('--description <text>', 'instance description')
  .option('--disk-description <text>', 'description of every disk (volume) that does not give its own (--disk FILE,description=…)')
  .option('--boot-check', 'boot the converted boot disk under qemu before the instance is made (extension parameter BootCheck=true)')
  .option('--boot-check-marker <text>', 'a serial-console line that means the guest is up (BootCheckMarker) [default: a login prompt or cloud-init]')
  .option('--kernel-id <id>', 'kernel image (eki-) a partition image boots with (extension parameter KernelId)')
  .option('--ramdisk-id <id>', 'its ramdisk image (eri-) (extension parameter RamdiskId)')
  .addOption(new Option('--virtualization-type <type>', 'extension parameter VirtualizationType [default: paravirtual with a kernel, else hvm]').choices(['paravirtual', 'hvm']))
  .addOption(new Option('--layout <layout>', 'the disk is a whole disk or one bare filesystem (extension parameter Layout) [default: what the disk is]').choices(['disk', 'partition']))
  .action(async (files: string[], opts: UploadFlags & ImportInstanceFlags) => {
    try {
      const { clientContext } = await import('./client-options');
      const { importInstance, diskOf, formatOf, parseDiskSpec } = await import('./commands/import-instance');
      const upload = uploadOptionsFrom(opts, undefined);
      const defaults = {
        format: opts.format ? formatOf(opts.format, '--format') : undefined,
        description: opts.diskDescription,
        volumeSizeGiB: upload.volumeSizeGiB,
      };
      const disks = [...(files ?? []).map((file) => diskOf(file, defaults)), ...opts.disk.map((spec) => parseDiskSpec(spec, defaults))];
      if (disks.length === 0) throw new Error('no disk to import: give the boot disk as FILE (or --disk FILE,format=…), then any further disks');
      const ctx = await clientContext(opts);
      const result = await importInstance(ctx, disks, {
        ...upload,
        architecture: opts.architecture,
        instanceType: opts.instanceType,
        platform: opts.platform,
        instanceDescription: opts.description,
        groupNames: opts.group,
        subnetId: opts.subnetId,
        privateIpAddress: opts.privateIpAddress,
        shutdownBehavior: opts.shutdownBehavior,
        bootCheck: opts.bootCheck,
        bootCheckMarker: opts.bootCheckMarker,
        kernelId: opts.kernelId,
        ramdiskId: opts.ramdiskId,
        virtualizationType: opts.virtualizationType,
        layout: opts.layout,
      });
      await reportNewTask(ctx, opts, result, `${result.conversionTaskId}\t${result.instanceId}`);
    } catch (err) {
      fail(err);
    }
  });

withClientFlags(program.command('describe-conversion-tasks [ids...]').description('show conversion tasks'))
  .option('--json', 'print JSON')
  .action(async (ids: string[], opts: ClientFlags & { json?: boolean }) => {
    try {
      const { clientContext } = await import('./client-options');
      const { describeConversionTasks, formatConversionTask } = await import('./commands/conversion-tasks');
      const ctx = await clientContext(opts);
      const tasks = await describeConversionTasks(ctx.ec2, ids ?? []);
      process.stdout.write(opts.json ? JSON.stringify(tasks, null, 2) + '\n' : tasks.map(formatConversionTask).join('\n') + (tasks.length ? '\n' : ''));
    } catch (err) {
      fail(err);
    }
  });

withClientFlags(program.command('cancel-conversion-task <id>').description('cancel a conversion task'))
  .option('--reason <text>', 'reason recorded on the task')
  .action(async (id: string, opts: ClientFlags & { reason?: string }) => {
    try {
      const { clientContext } = await import('./client-options');
      const { cancelConversionTask } = await import('./commands/conversion-tasks');
      const ctx = await clientContext(opts);
      await cancelConversionTask(ctx.ec2, id, opts.reason);
      process.stdout.write(`${id} cancelled\n`);
    } catch (err) {
      fail(err);
    }
  });

withClientFlags(program.command('export-instance <instance-id>').description('export an imported instance\'s disk into an S3 bucket (CreateInstanceExportTask)'))
  .addOption(new Option('--target-environment <env>', 'hypervisor the export is for; picks the default disk format').choices(['vmware', 'citrix', 'microsoft']).default('vmware'))
  .addOption(new Option('--disk-image-format <format>', 'disk format [default: VMDK for vmware, VHD for citrix and microsoft]').choices(['VMDK', 'VHD', 'RAW']))
  .addOption(new Option('--container-format <format>', 'wrap the VMDK in an OVA').choices(['ova']))
  .addOption(new Option('--vhd-type <type>', 'VHD subformat (ExportToS3.X-ImagingVhdType) [default: fixed for microsoft, else dynamic]').choices(['dynamic', 'fixed']))
  .requiredOption('--bucket <bucket>', 'bucket the export is written to (must exist)')
  .option('--prefix <prefix>', 'key prefix; the object is <prefix><export task id>.<format>', '')
  .option('--description <text>', 'description of the export task')
  .option('--no-progress', 'no progress bar')
  .option('--wait', 'follow the task until it completes or is cancelled (exit 1 if cancelled)')
  .option('--json', 'print the task as JSON')
  .action(async (instanceId: string, opts: ClientFlags & { targetEnvironment: 'vmware' | 'citrix' | 'microsoft'; diskImageFormat?: 'VMDK' | 'VHD' | 'RAW'; containerFormat?: 'ova'; vhdType?: 'dynamic' | 'fixed'; bucket: string; prefix: string; description?: string; progress: boolean; wait?: boolean; json?: boolean }) => {
    try {
      const { clientContext } = await import('./client-options');
      const { exportInstance, formatExportTask, waitForExportTask } = await import('./commands/export-tasks');
      const ctx = await clientContext(opts);
      let task = await exportInstance(ctx.ec2, {
        instanceId, targetEnvironment: opts.targetEnvironment, diskImageFormat: opts.diskImageFormat, containerFormat: opts.containerFormat,
        vhdType: opts.vhdType, bucket: opts.bucket, prefix: opts.prefix, description: opts.description,
      });
      if (!opts.wait) {
        process.stdout.write(opts.json ? JSON.stringify(task, null, 2) + '\n' : `${task.exportTaskId}\ts3://${task.s3Bucket}/${task.s3Key}\n`);
        return;
      }
      task = await waitForExportTask(ctx.ec2, task.exportTaskId, { progress: opts.progress && !opts.json && process.stderr.isTTY === true });
      process.stdout.write(opts.json ? JSON.stringify(task, null, 2) + '\n' : formatExportTask(task) + '\n');
      if (task.state !== 'completed') process.exitCode = 1;
    } catch (err) {
      fail(err);
    }
  });

withClientFlags(program.command('describe-export-tasks [ids...]').description('show export tasks'))
  .option('--wait', 'follow the one task named until it ends, with a progress bar')
  .option('--no-progress', 'no progress bar')
  .option('--json', 'print JSON')
  .action(async (ids: string[], opts: ClientFlags & { json?: boolean; wait?: boolean; progress: boolean }) => {
    try {
      const { clientContext } = await import('./client-options');
      const { describeExportTasks, formatExportTask, waitForExportTask } = await import('./commands/export-tasks');
      const ctx = await clientContext(opts);
      if (opts.wait && (ids ?? []).length !== 1) throw new Error('--wait follows one task: name exactly one export task id');
      const tasks = opts.wait
        ? [await waitForExportTask(ctx.ec2, ids[0], { progress: opts.progress && !opts.json && process.stderr.isTTY === true })]
        : await describeExportTasks(ctx.ec2, ids ?? []);
      process.stdout.write(opts.json ? JSON.stringify(tasks, null, 2) + '\n' : tasks.map(formatExportTask).join('\n') + (tasks.length ? '\n' : ''));
    } catch (err) {
      fail(err);
    }
  });

withClientFlags(program.command('cancel-export-task <id>').description('cancel an export task (export-i-… or export-ami-…); its partial upload is removed'))
  .action(async (id: string, opts: ClientFlags) => {
    try {
      const { clientContext } = await import('./client-options');
      const { cancelExportTask } = await import('./commands/export-tasks');
      const ctx = await clientContext(opts);
      await cancelExportTask(ctx.ec2, id);
      process.stdout.write(`${id} cancelling\n`);
    } catch (err) {
      fail(err);
    }
  });

/** -f/--format as qemu-img takes it: the format the input is declared to be, checked against its bytes. */
const formatOption = (): Option =>
  new Option('-f, --format <format>', 'the input\'s format (raw, qcow2, vmdk, vhd or vpc, vhdx, ova); refused when the bytes are another [default: sniffed, and checked against the name\'s extension]');

program
  .command('info <image>')
  .description('show the format, virtual size and safety verdict of a disk image (file or s3://bucket/key)')
  .addOption(formatOption())
  .option('--json', 'print JSON')
  .action(async (image: string, opts: { format?: string; json?: boolean }) => {
    const { infoCommand } = await import('./toolkit-commands');
    process.exitCode = await infoCommand(image, { format: opts.format, json: opts.json });
  });

program
  .command('convert <input> <output>')
  .description('convert a disk image to raw, VMDK (streamOptimized), VHD (dynamic or fixed) or OVA; files or s3://bucket/key')
  .addOption(formatOption())
  .addOption(new Option('-O, --output-format <format>', 'output format [default: from the output name, else raw]').choices(['raw', 'vmdk', 'vhd', 'vhd-fixed', 'ova']))
  .option('--no-progress', 'no progress bar')
  .action(async (input: string, output: string, opts: { format?: string; outputFormat?: 'raw' | 'vmdk' | 'vhd' | 'vhd-fixed' | 'ova'; progress: boolean }) => {
    const { convertCommand } = await import('./toolkit-commands');
    process.exitCode = await convertCommand(input, output, { format: opts.format, outputFormat: opts.outputFormat, progress: opts.progress && process.stderr.isTTY === true });
  });

program
  .command('check <image>')
  .description('run every safety check and read the whole image without writing anything')
  .addOption(formatOption())
  .option('--json', 'print JSON')
  .action(async (image: string, opts: { format?: string; json?: boolean }) => {
    const { checkCommand } = await import('./toolkit-commands');
    process.exitCode = await checkCommand(image, { format: opts.format, json: opts.json });
  });

// ---- imaging inspect (guest inspection; the command lives in commands/inspect.ts) ----
program
  .command('inspect <image>')
  .description('inspect the guest on a local disk image of any format: partitions, filesystems, OS, kernels, boot mode; prints the verdict the import would give')
  .addOption(new Option('-f, --format <format>', 'the image\'s format; refused when the file is another').choices(['raw', 'vmdk', 'vhd', 'vhdx', 'qcow2', 'ova']))
  .addOption(new Option('--boot-mode <mode>', 'the BootMode the import would request').choices(['legacy-bios', 'uefi', 'uefi-preferred']))
  .addOption(new Option('--architecture <arch>', 'the Architecture the import would request').choices(['i386', 'x86_64', 'arm64']))
  .option('--kernel-associated', 'a KernelId and RamdiskId will be given (a partition image needs no kernel of its own)')
  .option('--json', 'print the report as JSON')
  .action(async (image: string, opts) => {
    const { inspectCommand } = await import('./commands/inspect');
    process.exitCode = await inspectCommand(image, { format: opts.format, json: opts.json, bootMode: opts.bootMode, architecture: opts.architecture, kernelAssociated: opts.kernelAssociated });
  });
// ---- end of imaging inspect ----
// --- Accounts and keys (administrator commands; cli/commands/accounts.ts) ---
registerAccountCommands(program, fail);
// --- end accounts ---
// --- Import tasks: ImportImage / ImportSnapshot and friends, delete-disk-image (cli/commands/import-tasks.ts) ---
registerImportTaskCommands(program, fail, withClientFlags, async (flags) => (await import('./client-options')).clientContext(flags));

// --- Export image tasks: ExportImage / DescribeExportImageTasks (cli/commands/export-image.ts) ---
registerExportImageCommands(program, fail, withClientFlags, async (flags) => (await import('./client-options')).clientContext(flags));
registerBundleCommands(program, fail, withClientFlags, async (flags) => (await import('./client-options')).clientContext(flags));
registerBundleTaskCommands(program, fail, withClientFlags, async (flags) => (await import('./client-options')).clientContext(flags));
// --- end import tasks ---

// ---- operator commands: dead letters and task retries (commands/operator.ts) ----
const withOperatorFlags = (command: Command): Command =>
  command
    .option('--nats-url <url>', 'NATS server of the deployment [env IMAGING_NATS_URL]')
    .option('--mongodb-uri <uri>', 'task store of the deployment [env IMAGING_MONGODB_URI]')
    .option('--mongodb-db <name>', 'MongoDB database name [env IMAGING_MONGODB_DB; default imaging]');

const events = program.command('events').description('inspect and replay events the pipeline gave up on (dead letters)');
withOperatorFlags(events.command('list-dead').description('list the events stages gave up on, with stage, task and reason'))
  .option('--json', 'print JSON')
  .action(async (opts) => {
    const { listDeadCommand } = await import('./commands/operator');
    process.stdout.write(await listDeadCommand(opts).catch(fail));
  });
withOperatorFlags(events.command('replay [id]').description('re-drive the task of a dead letter (by id or event id) and publish its event again'))
  .option('--all', 'replay every dead letter')
  .action(async (id: string | undefined, opts) => {
    const { replayCommand } = await import('./commands/operator');
    process.stdout.write(await replayCommand(id, opts).catch(fail));
  });
const tasksCommand = program.command('tasks').description('operate on tasks of a distributed deployment');
withOperatorFlags(tasksCommand.command('retry <task>').description('re-drive a failed task from its last good step'))
  .action(async (task: string, opts) => {
    const { retryTaskCommand } = await import('./commands/operator');
    process.stdout.write(await retryTaskCommand(task, opts).catch(fail));
  });
// ---- end of operator commands ----

program.parseAsync(process.argv).catch(fail);
