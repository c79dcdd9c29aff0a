/**
 * ImportInstance: one conversion task for the instance and its disks. DiskImage.1 is the boot
 * disk, converted by the instance task itself; each further DiskImage.N is converted by a volume
 * task of its own that names the instance task (`partOf`) and is shown only as one of the
 * instance's volumes. The instance is registered when every disk is. The instance id is
 * allocated now and returned, as EC2 does.
 */
import { isIPv4 } from 'net';
import { newImportInstanceTaskId, newImportVolumeTaskId, newInstanceId } from '../../tasks/ids';
import { isTerminal, transition, updateTask } from '../../tasks/state-machine';
import type { BootCheckRequest, BootImageRequest, ImportInstanceSpec, ImportVolumeRequest, InstanceArchitecture, TaskDocument, TaskRequest } from '../../tasks/task';
import { Ec2Error, invalidValue } from '../errors';
import type { QueryParams } from '../query-request';
import { bootCheckRequest } from './boot-check-param';
import { bootImageRequest } from './kernel-params';
import type { ActionContext, ActionHandler } from './action';
import { conversionTaskXml } from './conversion-task-xml';
import { optionalDescription, validateDiskImage } from './disk-image';
import { startImportTask } from './start-task';
import { instanceEndReason } from '../../tasks/instance-disks';

export const ARCHITECTURES: readonly InstanceArchitecture[] = ['i386', 'x86_64', 'arm64', 'x86_64_mac', 'arm64_mac'];
export const DEFAULT_ARCHITECTURE: InstanceArchitecture = 'x86_64';
const SHUTDOWN_BEHAVIORS = ['stop', 'terminate'] as const;
/** family.size, e.g. m5.large, u-6tb1.metal, mac2-m2pro.metal: EC2's list has over a thousand. */
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9-]+$/;
const SUBNET_ID = /^subnet-[0-9a-f]{8}([0-9a-f]{9})?$/;
const GROUP_ID = /^sg-[0-9a-f]{8}([0-9a-f]{9})?$/;
const MAX_GROUP_NAME_CHARS = 255;
/** EC2 user data is at most 16 KiB before base64 encoding. */
const MAX_USER_DATA_CHARS = Math.ceil((16 * 1024) / 3) * 4;
const LS = 'LaunchSpecification';
/** Disks of one instance at most: the EBS volumes an instance can have attached, less its root. */
export const MAX_DISK_IMAGES = 26;

/** The instance's disks (the boot disk first), and the instance to make of them (its id is allocated when the call is run). */
export interface ImportInstanceInput {
  disks: ImportVolumeRequest[];
  instance: Omit<ImportInstanceSpec, 'instanceId'>;
  /** The extension parameters BootCheck / BootCheckMarker (gateway/actions/boot-check-param.ts). */
  bootCheck?: BootCheckRequest;
  /** The extension parameters KernelId, RamdiskId, VirtualizationType, Layout (gateway/actions/kernel-params.ts), for the boot disk. */
  boot?: BootImageRequest;
}

export const importInstance: ActionHandler<ImportInstanceInput> = {
  async validate(params: QueryParams, ctx: ActionContext): Promise<ImportInstanceInput> {
    const availabilityZone = params.string(`${LS}.Placement.AvailabilityZone`) || `${ctx.region}a`;
    const bootCheck = bootCheckRequest(params);
    const disks = diskImageIndexes(params).map((index) => ({ ...validateDiskImage(params, `DiskImage.${index}.`, ctx.allowedObjectHosts, ctx.maxImageBytes), availabilityZone }));
    const boot = await bootImageRequest(params, ctx);
    return { disks, instance: launchSpecification(params), ...(bootCheck ? { bootCheck } : {}), ...(Object.keys(boot).length ? { boot } : {}) };
  },

  async run({ disks: [bootDisk, ...others], instance, bootCheck, boot }, ctx) {
    // The further disks' tasks are recorded first, naming the instance task's id, so the instance
    // task never runs without knowing them; each one converts on its own.
    const taskId = newImportInstanceTaskId();
    const members: TaskDocument[] = [];
    try {
      for (const [i, disk] of others.entries()) {
        members.push(await startImportTask('import-volume', newImportVolumeTaskId, { ...disk, partOf: { taskId, diskIndex: i + 2 } }, ctx));
      }
      const request: TaskRequest = {
        ...bootDisk,
        ...boot,
        instance: { instanceId: newInstanceId(), ...instance, ...(members.length ? { volumeTaskIds: members.map((m) => m.id) } : {}) },
        // Only the boot disk is booted: the further disks are data volumes.
        ...(bootCheck ? { bootCheck } : {}),
      };
      const task = await startImportTask('import-instance', () => taskId, request, ctx);
      // A further disk that already failed (before this task was recorded, it could not end it):
      // the instance ends now rather than after its boot disk converted for nothing.
      const current = members.length ? await ctx.tasks.list({ accountId: task.accountId, ids: members.map((m) => m.id) }) : [];
      const failed = current.find((m) => m.state === 'failed' || m.state === 'cancelled');
      if (failed) await Promise.all([task, ...members].map((t) => cancelQuietly(ctx, t.id, instanceEndReason(failed))));
      return { conversionTask: conversionTaskXml((await ctx.tasks.get(taskId)) ?? task, current.length ? current : members) };
    } catch (err) {
      // Disks of an instance that was never recorded would convert for nothing.
      await Promise.all(members.map((m) => cancelQuietly(ctx, m.id)));
      throw err;
    }
  },
};

/** Ends a task waiting for its upload; marks any other for the stage working on it (or the sweeper). */
async function cancelQuietly(ctx: ActionContext, id: string, reason = 'The instance import could not be started'): Promise<void> {
  await updateTask(ctx.tasks, id, (doc) => {
    if (isTerminal(doc.state) || doc.cancelRequested) return undefined;
    const now = ctx.now();
    const marked = { ...doc, cancelRequested: { at: now.toISOString(), reason } };
    return doc.state === 'pending-upload' ? transition(marked, 'cancelled', reason, now) : marked;
  }).catch(() => undefined);
}

/** The N of every DiskImage.N.*, in order: at least one, at most MAX_DISK_IMAGES. */
function diskImageIndexes(params: QueryParams): number[] {
  const indexes = new Set<number>();
  for (const [name] of params.entries()) {
    const match = /^DiskImage\.(\d+)\./.exec(name);
    if (!match) continue;
    const index = Number(match[1]);
    if (index < 1) throw new Ec2Error('InvalidParameter', `List parameter ${name} is invalid; list indexes start at 1`);
    indexes.add(index);
  }
  if (indexes.size === 0) {
    throw new Ec2Error('MissingParameter', 'The request must contain at least one disk image: DiskImage.1.Image.Format, DiskImage.1.Image.Bytes, DiskImage.1.Image.ImportManifestUrl and DiskImage.1.Volume.Size');
  }
  if (indexes.size > MAX_DISK_IMAGES) {
    throw new Ec2Error('InvalidParameterValue', `The request has ${indexes.size} disk images; an instance can be imported with at most ${MAX_DISK_IMAGES}`);
  }
  return [...indexes].sort((a, b) => a - b);
}

function launchSpecification(params: QueryParams): Omit<ImportInstanceSpec, 'instanceId'> {
  const platformText = params.string('Platform');
  let platform: 'Windows' | undefined;
  if (platformText !== undefined && platformText !== '') {
    // EC2's enum has only Windows; Linux (what leaving it out means) is accepted as well.
    const lower = platformText.toLowerCase();
    if (lower !== 'windows' && lower !== 'linux') throw invalidValue('Platform', platformText, 'It must be Windows or Linux (or left out for a Linux instance).');
    if (lower === 'windows') platform = 'Windows';
  }

  const architectureText = params.string(`${LS}.Architecture`);
  const architecture = (architectureText || DEFAULT_ARCHITECTURE) as InstanceArchitecture;
  if (!ARCHITECTURES.includes(architecture)) throw invalidValue(`${LS}.Architecture`, String(architectureText), `It must be one of ${ARCHITECTURES.join(', ')}.`);

  const instanceType = params.string(`${LS}.InstanceType`) || undefined;
  if (instanceType !== undefined && !INSTANCE_TYPE.test(instanceType)) {
    throw invalidValue(`${LS}.InstanceType`, instanceType, 'It must be an EC2 instance type such as m5.large.');
  }

  const groupNames = params.list(`${LS}.GroupName`);
  for (const [i, group] of groupNames.entries()) {
    if (group === '' || group.length > MAX_GROUP_NAME_CHARS) throw invalidValue(`${LS}.GroupName.${i + 1}`, group.slice(0, 20), `A security group name has 1 to ${MAX_GROUP_NAME_CHARS} characters.`);
  }
  const groupIds = params.list(`${LS}.GroupId`);
  for (const [i, group] of groupIds.entries()) {
    if (!GROUP_ID.test(group)) throw invalidValue(`${LS}.GroupId.${i + 1}`, group, 'A security group id looks like sg-1a2b3c4d.');
  }

  const subnetId = params.string(`${LS}.SubnetId`) || undefined;
  if (subnetId !== undefined && !SUBNET_ID.test(subnetId)) throw invalidValue(`${LS}.SubnetId`, subnetId, 'A subnet id looks like subnet-1a2b3c4d.');
  const privateIpAddress = params.string(`${LS}.PrivateIpAddress`) || undefined;
  if (privateIpAddress !== undefined) {
    if (!isIPv4(privateIpAddress)) throw invalidValue(`${LS}.PrivateIpAddress`, privateIpAddress, 'It must be an IPv4 address such as 10.0.0.12.');
    if (!subnetId) throw new Ec2Error('MissingParameter', `${LS}.PrivateIpAddress is an address in a subnet; the request must also contain ${LS}.SubnetId`);
  }

  const userData = params.string(`${LS}.UserData.Data`) || undefined;
  if (userData !== undefined && userData.length > MAX_USER_DATA_CHARS) {
    throw invalidValue(`${LS}.UserData.Data`, `${userData.slice(0, 20)}…`, `User data can be at most 16 KiB (${MAX_USER_DATA_CHARS} characters base64-encoded).`);
  }

  const monitoring = params.boolean(`${LS}.Monitoring`);
  const shutdownText = params.string(`${LS}.InstanceInitiatedShutdownBehavior`) || undefined;
  const shutdown = shutdownText?.toLowerCase() as ImportInstanceSpec['instanceInitiatedShutdownBehavior'];
  if (shutdown !== undefined && !SHUTDOWN_BEHAVIORS.includes(shutdown)) {
    throw invalidValue(`${LS}.InstanceInitiatedShutdownBehavior`, String(shutdownText), `It must be one of ${SHUTDOWN_BEHAVIORS.join(', ')}.`);
  }

  const description = optionalDescription(params, 'Description');
  return {
    architecture,
    ...(platform ? { platform } : {}),
    ...(instanceType ? { instanceType } : {}),
    ...(description !== undefined ? { description } : {}),
    ...(groupNames.length ? { groupNames } : {}),
    ...(groupIds.length ? { groupIds } : {}),
    ...(subnetId ? { subnetId } : {}),
    ...(privateIpAddress ? { privateIpAddress } : {}),
    ...(userData ? { userData } : {}),
    ...(monitoring !== undefined ? { monitoring } : {}),
    ...(shutdown ? { instanceInitiatedShutdownBehavior: shutdown } : {}),
  };
}
