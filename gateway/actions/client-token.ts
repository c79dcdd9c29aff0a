/**
 * ClientToken idempotency, as EC2 answers it. Without a token, every call starts a new task.
 * With one, the same token and parameters give the task the first call made (or, when that call
 * claimed the token and stopped before it stored its task, a new task under the claimed id); the
 * same token with other parameters is IdempotentParameterMismatch.
 */
import { createHash } from 'crypto';
import type { TaskDocument } from '../../tasks/task';
import { Ec2Error } from '../errors';
import type { ActionContext } from './action';

/**
 * `asked` is what makes two calls the same request (its JSON is the token's fingerprint);
 * `start` creates the task with an id from the function it is given.
 */
export async function startOnce(
  ctx: ActionContext,
  token: string | undefined,
  asked: unknown,
  newTaskId: () => string,
  start: (newTaskId: () => string) => Promise<TaskDocument>,
): Promise<TaskDocument> {
  if (!token) return start(newTaskId);
  const fingerprint = createHash('sha256').update(JSON.stringify(asked)).digest('hex');
  const proposed = newTaskId();
  const earlier = await ctx.tasks.claimClientToken(ctx.caller.accountId, token, { taskId: proposed, fingerprint });
  if (earlier && earlier.fingerprint !== fingerprint) {
    throw new Ec2Error('IdempotentParameterMismatch', `The client token '${token}' was already used for a request with other parameters; use a new token for a new request`);
  }
  const taskId = earlier?.taskId ?? proposed;
  const existing = await ctx.tasks.get(taskId);
  if (existing) return existing;
  // First call, or a first call that claimed the token and stopped before it stored the task.
  return start(() => taskId);
}
