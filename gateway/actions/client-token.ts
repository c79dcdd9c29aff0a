/**
 * ClientToken idempotency, as EC2 answers it. Without a token, every call makes something new
 * (a task, an image). With one, the same token and parameters give what the first call made (or,
 * when that call claimed the token and stopped before it stored its result, a new one under the
 * claimed id); the same token with other parameters is IdempotentParameterMismatch.
 */
import { createHash } from 'crypto';
import type { TaskDocument } from '../../tasks/task';
import { Ec2Error } from '../errors';
import type { ActionContext } from './action';

/**
 * `asked` is what makes two calls the same request (its JSON is the token's fingerprint); `find`
 * looks up what a call made under an id; `make` makes it under the id from the function it is
 * given.
 */
export async function makeOnce<T>(
  ctx: ActionContext,
  token: string | undefined,
  asked: unknown,
  newId: () => string,
  find: (id: string) => Promise<T | undefined>,
  make: (newId: () => string) => Promise<T>,
): Promise<T> {
  if (!token) return make(newId);
  const fingerprint = createHash('sha256').update(JSON.stringify(asked)).digest('hex');
  const proposed = newId();
  const earlier = await ctx.tasks.claimClientToken(ctx.caller.accountId, token, { taskId: proposed, fingerprint });
  if (earlier && earlier.fingerprint !== fingerprint) {
    throw new Ec2Error('IdempotentParameterMismatch', `The client token '${token}' was already used for a request with other parameters; use a new token for a new request`);
  }
  const id = earlier?.taskId ?? proposed;
  const existing = await find(id);
  if (existing !== undefined) return existing;
  // First call, or a first call that claimed the token and stopped before it stored its result.
  return make(() => id);
}

/** makeOnce for the actions that start a task. */
export function startOnce(
  ctx: ActionContext,
  token: string | undefined,
  asked: unknown,
  newTaskId: () => string,
  start: (newTaskId: () => string) => Promise<TaskDocument>,
): Promise<TaskDocument> {
  return makeOnce(ctx, token, asked, newTaskId, (id) => ctx.tasks.get(id), start);
}
