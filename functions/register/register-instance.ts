/**
 * Registering an imported instance whose disks convert in several tasks: the instance task (the
 * boot disk) and one volume task per further disk. Each of them, once its own volume is
 * registered, settles the instance: whoever finds every disk's volume fixed writes the instance
 * (stopped, its volumes in DiskImage order) and completes the instance task. The volume ids are
 * fixed with a compare-and-set before each task looks at the others, so the last of them always
 * sees them all; two that both do write the same record, and only one advance wins.
 */
import { rowOf } from '../../pipeline/table';
import { isTerminal } from '../../tasks/state-machine';
import { importedBootFacts } from '../../tasks/guest-facts';
import type { InstanceRecord, TaskDocument } from '../../tasks/task';
import { ClientError } from '../errors';
import type { StageContext } from '../stage';
import { advanceToNext } from '../task-step';
import { followEndedInstance } from '../instance-group';

/**
 * `from` says who settles: the instance task's own register (which fails the instance when one
 * of its disks failed) or a volume task's (which leaves the instance task alone).
 */
/** The state a task waits in for register (its row of the pipeline table). */
const REGISTER_EXPECTS = rowOf('register').expects;

export async function settleInstance(ctx: StageContext, instanceTaskId: string, from: 'instance' | 'volume'): Promise<void> {
  const task = await ctx.tasks.get(instanceTaskId);
  if (!task) return;
  // The instance ended, or was asked to, while this disk registered: the disk goes with it.
  if (await followEndedInstance(ctx, task)) return;
  if (task.state !== REGISTER_EXPECTS || !task.artifacts.volumeId) return; // not there yet, or ended
  const spec = task.request.instance;
  if (!spec) throw new Error(`import-instance task ${task.id} has no instance in its request`);
  const memberIds = spec.volumeTaskIds ?? [];
  const found = memberIds.length ? await ctx.tasks.list({ accountId: task.accountId, ids: memberIds }) : [];
  const members = memberIds.map((id) => found.find((m) => m.id === id && m.request.partOf?.taskId === task.id));
  const failed = members.find((m) => !m || (isTerminal(m.state) && m.state !== 'completed'));
  if (failed !== undefined || members.length !== memberIds.length) {
    if (from === 'instance') {
      const index = members.indexOf(failed) + 2;
      throw new ClientError(failed ? `disk ${index} (${failed.id}) did not import: ${failed.statusMessage}` : `disk ${index} of the instance is missing`);
    }
    return;
  }
  if (members.some((m) => !m!.artifacts.volumeId)) return; // a disk is still converting; its register settles
  const volumeIds = [task.artifacts.volumeId, ...members.map((m) => m!.artifacts.volumeId!)];
  const instance = instanceRecord(task, volumeIds, new Date().toISOString());
  if (!instance) throw new Error(`task ${task.id} is no import-instance task`);
  await ctx.tasks.putResource(instance);
  // From a volume task's register the lease held is that task's, not the instance task's (whose
  // own register has finished): the advance is a compare-and-set on the instance task's state alone.
  const advancing = from === 'volume' ? { ...ctx, attempt: undefined } : ctx;
  const completed = await advanceToNext(advancing, 'register', task.id, () => ({}), { resourceId: instance.id });
  if (completed) return;
  // Ended meanwhile (a cancellation; its ending may have looked for the records before they
  // were written): no instance, and no volume of it.
  const ended = await ctx.tasks.get(task.id);
  if (ended && ended.state !== 'completed' && isTerminal(ended.state)) await followEndedInstance(ctx, ended);
}

/** Whether a task converts one of an instance's further disks. */
export const isInstanceDisk = (task: TaskDocument): boolean => task.request.partOf !== undefined;

/**
 * The instance an import-instance task makes: stopped, `volumeIds` its volumes in DiskImage order
 * (the boot disk's first), with the boot disk's kernel, ramdisk, virtualization and layout (the
 * extension parameters of ImportInstance).
 */
export function instanceRecord(task: TaskDocument, volumeIds: string[], createdAt: string): InstanceRecord | undefined {
  const spec = task.request.instance;
  if (task.kind !== 'import-instance' || !spec) return undefined;
  const { instanceId, volumeTaskIds: _volumeTaskIds, ...launch } = spec;
  return {
    ...launch,
    id: instanceId,
    kind: 'instance',
    accountId: task.accountId,
    taskId: task.id,
    state: 'stopped',
    volumeIds,
    ...(task.request.availabilityZone ? { availabilityZone: task.request.availabilityZone } : {}),
    ...importedBootFacts(task),
    createdAt,
  };
}
