/**
 * The cap on import tasks one account may have pending or active at once (issue 16; issue 11,
 * item 3): beyond it ImportVolume, ImportImage, ImportInstance and ImportSnapshot answer
 * ResourceLimitExceeded, so one account cannot fill the pipeline (or the store) with tasks that
 * never upload. Other accounts are not affected: each is counted apart.
 *
 * Counting and creating are one step per account in this process (a queue per account), so
 * concurrent calls of one account cannot all slip under the cap together. Gateways in other
 * processes count separately: with N gateway replicas an account may overshoot by at most N - 1.
 */
import { isTerminal } from '../../tasks/state-machine';
import type { TaskKind } from '../../tasks/task';
import { Ec2Error } from '../errors';
import type { ActionContext } from './action';

const IMPORT_KINDS: readonly TaskKind[] = ['import-volume', 'import-instance', 'import-image', 'import-snapshot'];

/** The tail of each account's queue of counted creations. */
const queues = new Map<string, Promise<unknown>>();

/** Runs `create` (which stores one import task) unless the caller's account is at the cap. */
export async function withinOpenTaskCap<T>(ctx: ActionContext, create: () => Promise<T>): Promise<T> {
  const cap = ctx.maxOpenTasksPerAccount;
  if (cap === undefined) return create();
  const accountId = ctx.caller.accountId;
  const previous = queues.get(accountId) ?? Promise.resolve();
  const mine = previous.catch(() => undefined).then(async () => {
    const open = (await ctx.tasks.list({ accountId, kinds: IMPORT_KINDS })).filter((task) => !isTerminal(task.state)).length;
    if (open >= cap) {
      throw new Ec2Error(
        'ResourceLimitExceeded',
        `This account has ${open} import tasks pending or active, the most allowed at once (${cap}, IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT); wait for one to complete or cancel one, then try again`,
      );
    }
    return create();
  });
  queues.set(accountId, mine);
  try {
    return await mine;
  } finally {
    if (queues.get(accountId) === mine) queues.delete(accountId);
  }
}
