/**
 * Import tasks (ImportImage, ImportSnapshot) as EC2 reports them: Status active with a
 * StatusMessage naming the step (pending, validating, converting, updating, booting) and
 * Progress as a string, then completed; a failed or cancelled task is deleted, with the reason
 * ("ClientError: …", "ServerError: …") as its StatusMessage.
 */
import type { TaskDocument } from '../../tasks/task';
import type { XmlObject } from '../xml';
import { importedGuestFacts } from '../../tasks/guest-facts';
import { tagSetXml } from './describe-common';
import { bootCheckXml, validationXml } from './guest-report-xml';

export type ImportTaskStatus = 'active' | 'deleting' | 'deleted' | 'completed';

const STEP_MESSAGE: Partial<Record<TaskDocument['state'], string>> = {
  'pending-upload': 'pending',
  'manifest-received': 'validating',
  'bundle-decrypted': 'converting',
  'disk-converted': 'updating',
  validated: 'booting',
  'boot-checked': 'booting',
};

export function importTaskStatus(task: TaskDocument): { status: ImportTaskStatus; statusMessage?: string; progress?: string } {
  switch (task.state) {
    case 'completed':
      return { status: 'completed' };
    case 'cancelled':
    case 'failed':
      return { status: 'deleted', statusMessage: task.statusMessage || undefined };
    case 'cancelling':
      return { status: 'deleting', statusMessage: task.statusMessage || undefined, progress: String(Math.floor(task.progress)) };
    default:
      if (task.cancelRequested) return { status: 'deleting', statusMessage: task.cancelRequested.reason ?? 'Canceled by user', progress: String(Math.floor(task.progress)) };
      return { status: 'active', statusMessage: STEP_MESSAGE[task.state] ?? task.statusMessage, progress: String(Math.floor(task.progress)) };
  }
}

/** The status of the task's one disk, as a SnapshotDetail / SnapshotTaskDetail reports it. */
function diskStatus(task: TaskDocument): { status: string; statusMessage?: string; progress?: string } {
  const overall = importTaskStatus(task);
  // The snapshot-imported waiter fails on `error`: a failed task's disk says so; a cancelled one is deleted.
  if (task.state === 'failed') return { status: 'error', statusMessage: overall.statusMessage };
  return overall;
}

function diskXml(task: TaskDocument): XmlObject {
  const spec = task.request.importImage!;
  const source = spec.source;
  const status = diskStatus(task);
  return {
    description: spec.diskDescription,
    deviceName: task.kind === 'import-image' ? spec.deviceName ?? '/dev/sda1' : undefined,
    diskImageSize: task.request.bytes > 0 ? task.request.bytes : undefined,
    format: task.request.format,
    progress: status.progress,
    snapshotId: task.artifacts.snapshotId,
    status: status.status,
    statusMessage: status.statusMessage,
    url: 'url' in source ? source.url : undefined,
    userBucket: 'bucket' in source ? { s3Bucket: source.bucket, s3Key: source.key } : undefined,
  };
}

export function importImageTaskXml(task: TaskDocument): XmlObject {
  const spec = task.request.importImage!;
  const { status, statusMessage, progress } = importTaskStatus(task);
  // Platform, Architecture and BootMode: the request's, filled in from the guest report.
  const facts = importedGuestFacts(task);
  return {
    architecture: facts.architecture,
    description: spec.description,
    encrypted: false,
    hypervisor: spec.hypervisor,
    imageId: task.artifacts.imageId,
    importTaskId: task.id,
    licenseType: spec.licenseType,
    platform: facts.platform,
    progress,
    snapshotDetailSet: [diskXml(task)],
    status,
    statusMessage,
    tagSet: tagSetXml(task.tags),
    bootMode: facts.bootMode,
    // Not EC2's: the guest report and the boot check's verdict (SDKs skip them; our CLI shows them).
    validation: task.artifacts.validation ? validationXml(task.artifacts.validation) : undefined,
    bootCheck: task.artifacts.bootCheck ? bootCheckXml(task.artifacts.bootCheck) : undefined,
  };
}

export function importSnapshotTaskXml(task: TaskDocument): XmlObject {
  const spec = task.request.importImage!;
  return {
    description: spec.description,
    importTaskId: task.id,
    snapshotTaskDetail: { ...diskXml(task), encrypted: false },
    tagSet: tagSetXml(task.tags),
    validation: task.artifacts.validation ? validationXml(task.artifacts.validation) : undefined,
  };
}
