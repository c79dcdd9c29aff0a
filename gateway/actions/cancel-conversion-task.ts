/**
 * CancelConversionTask: marks the task for cancellation. A task still waiting for its upload has
 * no stage working on it, so it is cancelled here; otherwise the stage working on it sees
 * cancelRequested and stops.
 */
import { ec2ConversionState, isTerminal, transition, updateTask } from '../../tasks/state-machine';
import { Ec2Error } from '../errors';
import type { ActionHandler } from './action';
import { checkTaskIdShape, isOwnedBy, unknownTaskIds } from './task-ids';
import { CONVERSION_TASK_KINDS, type TaskDocument } from '../../tasks/task';

const MAX_REASON_CHARS = 255;
export const CANCELED_BY_USER = 'Canceled by user';

interface CancelInput {
  id: string;
  reason?: string;
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
    if (!isOwnedBy(task, ctx.caller.accountId) || !CONVERSION_TASK_KINDS.includes(task.kind)) throw unknownTaskIds([id]);
    if (isTerminal(task.state)) throw alreadyFinished(task);
    return { id, reason };
  },

  async run({ id, reason }, ctx) {
    let finished: TaskDocument | undefined;
    await updateTask(ctx.tasks, id, (doc) => {
      // The task may have finished since validate read it.
      if (isTerminal(doc.state)) {
        finished = doc;
        return undefined;
      }
      const now = ctx.now();
      const marked = doc.cancelRequested ? doc : { ...doc, cancelRequested: { at: now.toISOString(), ...(reason ? { reason } : {}) }, updatedAt: now.toISOString() };
      if (doc.state === 'pending-upload') return transition(marked, 'cancelled', reason ?? CANCELED_BY_USER, now);
      return marked === doc ? undefined : marked;
    });
    if (finished) throw alreadyFinished(finished);
    return { return: true };
  },
};
