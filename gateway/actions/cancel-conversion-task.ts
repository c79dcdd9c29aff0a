/**
 * CancelConversionTask: marks the task for cancellation, and for an ImportInstance every volume
 * task of its further disks too. A task still waiting for its upload has no stage working on it,
 * so it is cancelled here; otherwise the stage working on it sees cancelRequested and stops (or
 * the sweeper ends it, when no stage holds it).
 */
import { ec2ConversionState, isTerminal, transition, updateTask } from '../../tasks/state-machine';
import { Ec2Error } from '../errors';
import type { ActionContext, ActionHandler } from './action';
import { checkTaskIdShape, isOwnedBy, unknownTaskIds } from './task-ids';
import { CONVERSION_TASK_KINDS, type TaskDocument } from '../../tasks/task';

const MAX_REASON_CHARS = 255;
export const CANCELED_BY_USER = 'Canceled by user';

interface CancelInput {
  id: string;
  reason?: string;
  /** The volume tasks of an instance's further disks, cancelled with it. */
  memberIds: string[];
}

const alreadyFinished = (task: TaskDocument) =>
  new Ec2Error('IncorrectState', `Conversion task ${task.id} has already finished (${ec2ConversionState(task)}); only an active task can be cancelled`);

export const cancelConversionTask: ActionHandler<CancelInput> = {
  async validate(params, ctx) {
    const id = params.requiredString('ConversionTaskId');
    checkTaskIdShape(id);
    const reason = params.string('ReasonMessage') || undefined;
    if (reason !== undefined && reason.length > MAX_REASON_CHARS) {
      throw new Ec2Error('InvalidParameterValue', `ReasonMessage can be at most ${MAX_REASON_CHARS} characters`);
    }
    const task = await ctx.tasks.get(id);
    if (!isOwnedBy(task, ctx.caller.accountId) || !CONVERSION_TASK_KINDS.includes(task.kind) || task.request.partOf) throw unknownTaskIds([id]);
    if (isTerminal(task.state)) throw alreadyFinished(task);
    return { id, reason, memberIds: task.request.instance?.volumeTaskIds ?? [] };
  },

  async run({ id, reason, memberIds }, ctx) {
    for (const memberId of memberIds) await markCancelled(ctx, memberId, reason);
    const finished = await markCancelled(ctx, id, reason);
    if (finished) throw alreadyFinished(finished);
    return { return: true };
  },
};

/** Marks one task for cancellation; the task itself if it had already finished. */
async function markCancelled(ctx: ActionContext, id: string, reason: string | undefined): Promise<TaskDocument | undefined> {
  let finished: TaskDocument | undefined;
  await updateTask(ctx.tasks, id, (doc) => {
    // The task may have finished since validate read it.
    if (isTerminal(doc.state)) {
      finished = doc;
      return undefined;
    }
    const now = ctx.now();
    const marked = doc.cancelRequested ? doc : { ...doc, cancelRequested: { at: now.toISOString(), ...(reason ? { reason } : {}) }, updatedAt: now.toISOString() };
    // No stage works on a task waiting for its upload: it ends here. An instance task whose own
    // disk is registered and which only waits for its other disks is ended by the sweeper within
    // seconds, which also removes the volume it made (functions/instance-group.ts).
    if (doc.state === 'pending-upload') return transition(marked, 'cancelled', reason ?? CANCELED_BY_USER, now);
    return marked === doc ? undefined : marked;
  });
  return finished;
}
