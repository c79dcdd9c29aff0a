/**
 * The disks of an imported instance end together. When one of them (the instance task's boot
 * disk, or the volume task of a further disk) fails or is cancelled, the instance task ends at
 * once, cancelled with a message naming that disk, and every other disk task is cancelled; what
 * each of them wrote (converted bytes, the volume records a register already made, the
 * instance record) is removed, so nothing of the instance stays in the image store.
 *
 * Race-safety: every task is changed with a compare-and-set. A task no stage holds (waiting for
 * its upload or for its next stage, or an instance task that only waits for its other disks) is
 * ended here; one a stage holds under a live lease is only marked (`cancelRequested`), and that
 * stage ends it itself (it notices while it works, the next stage refuses to claim it, or the
 * sweeper ends it once the lease has lapsed) and cleans up what it wrote. The instance is ended or
 * marked before its disks are looked at, and a disk's register looks at its instance after it
 * completed (register-instance.ts), so a disk that completes while its instance ends is removed
 * by one or the other, whichever comes second.
 *
 * Idempotence: running it again (a redelivered event of an ended disk, a second replica) marks
 * nothing new and removes only what is still there.
 */
import { isTerminal, transition, updateTask } from '../tasks/state-machine';
import type { TaskDocument } from '../tasks/task';
import { diskCancelledReason, instanceEndReason, instanceTaskIdOf, waitsForOtherDisks } from '../tasks/instance-disks';
import { leaseIsLive } from './lease';
import { clearTaskOutputs } from './leftovers';
import type { StageContext } from './stage';

export type GroupContext = Pick<StageContext, 'tasks' | 's3' | 'config' | 'log'>;

/** The messages the instance task and its other disks are ended with, when they were not asked to end before. */
export interface GroupEndReasons {
  instance: string;
  disks: string;
}

const endedUnfinished = (task: TaskDocument) => task.state === 'failed' || task.state === 'cancelled';

/** After `disk` ended: if it failed or was cancelled and is a disk of an instance, the instance and its other disks end too. */
export async function endInstanceWithDisk(ctx: GroupContext, disk: TaskDocument): Promise<void> {
  if (!endedUnfinished(disk)) return;
  const instanceTaskId = instanceTaskIdOf(disk);
  if (!instanceTaskId) return;
  await endInstanceGroup(ctx, instanceTaskId, disk.accountId, { instance: instanceEndReason(disk), disks: diskCancelledReason(disk) });
}

/**
 * Ends (or marks for ending) the instance task and every disk task it names, and removes what
 * the ended ones left. A completed instance is left alone: all its disks completed with it.
 */
export async function endInstanceGroup(ctx: GroupContext, instanceTaskId: string, accountId: string, reasons: GroupEndReasons): Promise<void> {
  const instance = await stopDisk(ctx, instanceTaskId, accountId, reasons.instance, (doc) => doc.kind === 'import-instance');
  if (!instance || instance.state === 'completed') return;
  for (const id of instance.request.instance?.volumeTaskIds ?? []) {
    await stopDisk(ctx, id, accountId, reasons.disks, (doc) => doc.request.partOf?.taskId === instanceTaskId);
  }
  if (isTerminal(instance.state)) await removeInstanceRecord(ctx, instance);
}

/**
 * Ends one task of the group now when no stage holds it, or marks it for the stage that does;
 * a task that has ended (a disk that completed included) has its outputs removed.
 */
async function stopDisk(ctx: GroupContext, id: string, accountId: string, reason: string, belongs: (doc: TaskDocument) => boolean): Promise<TaskDocument | undefined> {
  const now = new Date();
  let member = true;
  const doc = await updateTask(ctx.tasks, id, (current) => {
    member = current.accountId === accountId && belongs(current);
    if (!member || isTerminal(current.state)) return undefined;
    const marked = current.cancelRequested ? current : { ...current, cancelRequested: { at: now.toISOString(), reason } };
    if (leaseIsLive(current, now.getTime()) && !waitsForOtherDisks(current)) return marked === current ? undefined : marked;
    return { ...transition(marked, 'cancelled', marked.cancelRequested?.reason ?? reason, now), lease: undefined, wakeAt: undefined };
  });
  if (!doc || !member) return undefined;
  // A completed instance keeps everything; a completed further disk of an ended one does not.
  if (isTerminal(doc.state) && !(doc.state === 'completed' && !doc.request.partOf)) await removeDiskOutputs(ctx, doc);
  return doc;
}

/** Deletes the disk's converted bytes (the image too: the instance will not be retried) and its volume record. */
async function removeDiskOutputs(ctx: GroupContext, doc: TaskDocument): Promise<void> {
  await clearTaskOutputs(ctx, doc);
  const volumeId = doc.artifacts.volumeId;
  if (!volumeId) return;
  const volume = await ctx.tasks.getResource(volumeId);
  if (volume?.kind === 'volume' && volume.taskId === doc.id) await ctx.tasks.deleteResource(volumeId);
  // The task no longer names a volume that is gone; a disk that had completed says why it has none.
  await updateTask(ctx.tasks, doc.id, (current) => {
    if (current.artifacts.volumeId !== volumeId) return undefined;
    const { volumeId: _removed, ...artifacts } = current.artifacts;
    const statusMessage = current.state === 'completed' ? `Volume ${volumeId} removed: the instance did not import` : current.statusMessage;
    return { ...current, artifacts, statusMessage, updatedAt: new Date().toISOString() };
  });
  ctx.log.info({ taskId: doc.id, volumeId }, 'removed the volume of a disk whose instance did not import');
}

/** The instance record, if a register wrote it before the instance ended. */
export async function removeInstanceRecord(ctx: GroupContext, instance: TaskDocument): Promise<void> {
  const instanceId = instance.request.instance?.instanceId;
  if (!instanceId || instance.state === 'completed') return;
  const record = await ctx.tasks.getResource(instanceId);
  if (record?.kind === 'instance' && record.taskId === instance.id) await ctx.tasks.deleteResource(instanceId);
}

/**
 * What a disk's register does after it made its volume, when its instance has ended or was asked
 * to: end the rest of the group with the instance's own reason (its disk, just completed, is
 * removed with it). Returns whether the instance has ended or is ending.
 */
export async function followEndedInstance(ctx: GroupContext, instance: TaskDocument): Promise<boolean> {
  if (!endedUnfinished(instance) && !instance.cancelRequested) return false;
  const reason = instance.cancelRequested?.reason ?? instance.statusMessage;
  await endInstanceGroup(ctx, instance.id, instance.accountId, { instance: reason, disks: 'Cancelled: the instance import ended' });
  return true;
}
