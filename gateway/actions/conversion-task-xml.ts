/**
 * A task document as EC2's ConversionTask structure. Under importVolume (and each
 * importInstance volume item) we also render elements EC2 does not have (imageLocation,
 * imageSha256, progress, the validate stage's report as validation and the boot check's as
 * bootCheck), and under importInstance how the instance boots (kernelId, ramdiskId,
 * virtualizationType and layout: ImportInstance's extension parameters, and the layout the
 * validate stage found): SDKs skip unknown elements, and our own CLI reads them.
 */
import { ec2ConversionState } from '../../tasks/state-machine';
import type { TaskDocument } from '../../tasks/task';
import type { XmlObject } from '../xml';
import { bootCheckXml, validationXml } from './guest-report-xml';
import { rowOf } from '../../pipeline/table';
import { instanceEndReason } from '../../tasks/instance-disks';
import { importedBootFacts } from '../../tasks/guest-facts';

/** `members`: the volume tasks of an import-instance task's further disks (those it names; others are ignored). */
export function conversionTaskXml(task: TaskDocument, members: TaskDocument[] = []): XmlObject {
  const volume = volumeDetailXml(task);
  const disks = task.kind === 'import-instance' ? instanceDisks(task, members) : [task];
  const { state, statusMessage } = overallState(disks);
  return {
    conversionTaskId: task.id,
    expirationTime: task.expiresAt,
    ...(task.kind === 'import-instance' ? { importInstance: importInstanceXml(task, disks, state) } : { importVolume: volume }),
    state,
    statusMessage,
  };
}

/** The instance task's own disk, then its further disks' tasks in DiskImage order (those found). */
function instanceDisks(task: TaskDocument, members: TaskDocument[]): TaskDocument[] {
  const ids = task.request.instance?.volumeTaskIds ?? [];
  const byId = new Map(members.map((m) => [m.id, m]));
  return [task, ...ids.map((id) => byId.get(id)).filter((m): m is TaskDocument => m !== undefined)];
}

/**
 * One state for the instance and all its disks: cancelled once the instance task ended (its
 * message names the disk that ended it) or as soon as one disk failed (that disk, named);
 * cancelling while the instance task is asked to end; completed when the instance task completed
 * (it does once every disk is registered), otherwise the instance task's own.
 */
function overallState(disks: TaskDocument[]): { state: ReturnType<typeof ec2ConversionState>; statusMessage: string } {
  const [task] = disks;
  // The instance task's own message once it ended (it names the disk that ended it); before, the
  // disk that failed (rather than one cancelled because of it), named.
  if (ec2ConversionState(task) === 'cancelled') {
    // The boot disk's own failure is named as any other disk's is.
    return { state: 'cancelled', statusMessage: task.state === 'failed' && disks.length > 1 ? instanceEndReason(task) : task.statusMessage };
  }
  const failed = disks.find((d) => d.state === 'failed');
  if (failed) return { state: 'cancelled', statusMessage: instanceEndReason(failed) };
  // Asked to end (by the user, or because a disk ended): the reason, until the instance task has.
  if (task.cancelRequested) return { state: 'cancelling', statusMessage: task.cancelRequested.reason ?? task.statusMessage };
  const ended = disks.find((d) => ec2ConversionState(d) === 'cancelled');
  if (ended) return { state: 'cancelled', statusMessage: instanceEndReason(ended) };
  const cancelling = disks.find((d) => ec2ConversionState(d) === 'cancelling');
  if (cancelling) return { state: 'cancelling', statusMessage: cancelling.statusMessage };
  const state = ec2ConversionState(task);
  if (state === 'active' && task.state === rowOf('register').expects && disks.some((d) => d.state !== 'completed' && d !== task)) {
    return { state, statusMessage: 'Waiting for the instance\'s other disks' };
  }
  return { state, statusMessage: task.statusMessage };
}

/** The instance and its volumes; each volume item carries its own disk's status, as EC2 reports it per volume. */
function importInstanceXml(task: TaskDocument, disks: TaskDocument[], overall: ReturnType<typeof ec2ConversionState>): XmlObject {
  const instance = task.request.instance;
  return {
    description: instance?.description,
    instanceId: instance?.instanceId,
    platform: instance?.platform,
    ...importedBootFacts(task),
    // A further disk that completed before its instance ended has had its volume removed with it.
    volumes: disks.map((disk) => ({ ...volumeDetailXml(disk), status: overall === 'cancelled' && disk.state === 'completed' ? 'cancelled' : ec2ConversionState(disk), statusMessage: disk.statusMessage })),
  };
}

function volumeDetailXml(task: TaskDocument): XmlObject {
  const image = task.artifacts.image;
  return {
    availabilityZone: task.request.availabilityZone,
    bytesConverted: task.bytesConverted,
    description: task.request.description,
    image: {
      format: task.request.format,
      size: task.request.bytes,
      importManifestUrl: task.request.manifestUrl,
      checksum: image?.sha256,
    },
    volume: { size: task.request.volumeSizeGiB, id: task.artifacts.volumeId },
    imageLocation: image ? `s3://${image.bucket}/${image.key}` : undefined,
    imageSha256: image?.sha256,
    progress: task.progress,
    validation: task.artifacts.validation ? validationXml(task.artifacts.validation) : undefined,
    bootCheck: task.artifacts.bootCheck ? bootCheckXml(task.artifacts.bootCheck) : undefined,
  };
}
