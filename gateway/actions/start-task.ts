/** Recording a new import task and announcing it to the pipeline: the same for every import action. */
import { makeEvent } from '../../events/make-event';
import { TaskExistsError } from '../../tasks/store';
import { isTerminal, transition, updateTask } from '../../tasks/state-machine';
import { Ec2Error } from '../errors';
import type { TaskDocument, TaskKind, TaskRequest } from '../../tasks/task';
import type { ActionContext } from './action';

type StartEventType = 'io.imaging.import.requested' | 'io.imaging.export.requested';

export const PENDING_UPLOAD_MESSAGE = 'Pending import-image upload';

/** Creates the task (waiting for its upload) and emits import.requested; resolves to the stored task. */
export async function startImportTask(kind: TaskKind, newTaskId: () => string, request: TaskRequest, ctx: ActionContext, extra: Pick<TaskDocument, 'tags'> = {}): Promise<TaskDocument> {
  const task = await createTask(kind, newTaskId, request, ctx, extra);
  await announceTask(ctx, task);
  return task;
}

/** The event that starts a new task's pipeline, kept in the task's outbox from its first write. */
export function withStartEvent(task: TaskDocument, type: StartEventType): TaskDocument {
  return { ...task, outbox: { id: `${task.id}/${task.state}`, type, source: '/imaging/gateway', data: { taskId: task.id, accountId: task.accountId } } };
}

/**
 * Emits the event that starts a new task's pipeline (the one in its outbox, under its id). The
 * task is already recorded with that event: when the publish fails, the call still returns the
 * task, and the sweeper publishes the event once the bus is back (a copy that did get through
 * is dropped by JetStream as a duplicate of the same id).
 */
export async function announceTask(ctx: ActionContext, task: TaskDocument): Promise<void> {
  const outbox = task.outbox;
  if (!outbox) throw new Error(`task ${task.id} was created without its start event`);
  try {
    await ctx.publish(makeEvent(outbox.type as StartEventType, outbox.data as { taskId: string; accountId: string }, 'gateway', outbox.id));
  } catch (err) {
    ctx.log?.warn({ taskId: task.id, err: String(err) }, `${outbox.type} not published; the sweeper will publish it`);
  }
}

/**
 * Stores the task `build` makes under a fresh id, drawing another id when one is already taken.
 * When the store fails, whether the task was recorded is uncertain (an insert can land and its
 * reply be lost): the call ends with the task if it was recorded, or with a retryable
 * Unavailable and no task, never with a task the caller does not know of (see settleUncertainCreate).
 */
export async function createWithFreshId(ctx: ActionContext, newTaskId: () => string, build: (id: string) => TaskDocument): Promise<TaskDocument> {
  for (let attempt = 0; ; attempt++) {
    const task = build(newTaskId());
    try {
      await ctx.tasks.create(task);
      return task;
    } catch (err) {
      if (err instanceof TaskExistsError) {
        // A retried insert whose first try landed (its reply lost) finds its own task.
        const existing = await ctx.tasks.get(task.id).catch(() => undefined);
        if (existing && isSameTask(existing, task)) return existing;
        // Random ids: a collision is rare, and a second one in a row means something else is wrong.
        if (attempt >= 2) throw err;
        continue;
      }
      return settleUncertainCreate(ctx, task, err);
    }
  }
}

/** How long the gateway tries to learn whether an insert that failed was recorded after all. */
const UNCERTAIN_READ_TRIES = 3;
const UNCERTAIN_READ_PAUSE_MS = 500;
/** How long a task recorded behind the caller's back is looked for, to retire it. */
const RETIRE_WINDOW_MS = 15 * 60_000;
const RETIRE_PAUSE_MS = 2000;

export const UNRECORDED_MESSAGE = 'The task store did not answer; the task was not created. Retry the call.';
export const RETIRED_MESSAGE = 'ServerError: the call that created this task was answered with an error (the task store did not answer); submit the import again';

/** The same task document, not another request's that drew the same id. */
function isSameTask(stored: TaskDocument, mine: TaskDocument): boolean {
  return stored.accountId === mine.accountId && stored.createdAt === mine.createdAt && JSON.stringify(stored.request) === JSON.stringify(mine.request);
}

/**
 * After a failed insert: reads the task back a few times. Recorded → the call succeeds with it.
 * Not recorded → Unavailable (retryable), no task. No answer at all → Unavailable, and the task,
 * should it turn out to be recorded once the store answers again, is cancelled with a message
 * saying why, so that no task runs that its caller was told does not exist.
 */
async function settleUncertainCreate(ctx: ActionContext, task: TaskDocument, cause: unknown): Promise<TaskDocument> {
  for (let i = 0; i < UNCERTAIN_READ_TRIES; i++) {
    if (i > 0) await pause(UNCERTAIN_READ_PAUSE_MS);
    let stored: TaskDocument | undefined;
    try {
      stored = await ctx.tasks.get(task.id);
    } catch {
      continue;
    }
    if (stored && isSameTask(stored, task)) {
      ctx.log?.warn({ taskId: task.id, err: String(cause) }, 'the task store failed on an insert that was recorded; going on with the task');
      return stored;
    }
    ctx.log?.warn({ taskId: task.id, err: String(cause) }, 'the task store failed on an insert that was not recorded');
    throw new Ec2Error('Unavailable', UNRECORDED_MESSAGE);
  }
  ctx.log?.warn({ taskId: task.id, err: String(cause) }, 'the task store does not answer; a task recorded meanwhile will be cancelled');
  void retireIfRecorded(ctx, task);
  throw new Ec2Error('Unavailable', UNRECORDED_MESSAGE);
}

async function retireIfRecorded(ctx: ActionContext, task: TaskDocument): Promise<void> {
  const until = Date.now() + RETIRE_WINDOW_MS;
  while (Date.now() < until) {
    await pause(RETIRE_PAUSE_MS);
    try {
      const stored = await ctx.tasks.get(task.id);
      if (!stored || !isSameTask(stored, task)) return;
      await updateTask(ctx.tasks, task.id, (doc) => (isTerminal(doc.state) ? undefined : transition(doc, 'cancelled', RETIRED_MESSAGE, ctx.now())));
      ctx.log?.warn({ taskId: task.id }, 'cancelled a task whose creating call was answered with an error');
      return;
    } catch {
      // Still unreachable: try again.
    }
  }
}

/** A pause that does not keep the process alive. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

async function createTask(kind: TaskKind, newTaskId: () => string, request: TaskRequest, ctx: ActionContext, extra: Pick<TaskDocument, 'tags'>): Promise<TaskDocument> {
  const now = ctx.now();
  const at = now.toISOString();
  return createWithFreshId(ctx, newTaskId, (id) => withStartEvent({
    id,
    kind,
    accountId: ctx.caller.accountId,
    state: 'pending-upload',
    statusMessage: PENDING_UPLOAD_MESSAGE,
    progress: 0,
    bytesConverted: 0,
    request,
    artifacts: {},
    history: [{ at, from: null, to: 'pending-upload', message: PENDING_UPLOAD_MESSAGE }],
    createdAt: at,
    updatedAt: at,
    expiresAt: new Date(now.getTime() + ctx.taskLifetimeMs).toISOString(),
    ...(extra.tags && extra.tags.length ? { tags: extra.tags } : {}),
    version: 0,
  }, 'io.imaging.import.requested'));
}
