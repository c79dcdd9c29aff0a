/** Recording a new import task and announcing it to the pipeline: the same for every import action. */
import { makeEvent } from '../../events/make-event';
import { TaskExistsError } from '../../tasks/store';
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

/** Stores the task `build` makes under a fresh id, drawing another id when one is already taken. */
export async function createWithFreshId(ctx: ActionContext, newTaskId: () => string, build: (id: string) => TaskDocument): Promise<TaskDocument> {
  for (let attempt = 0; ; attempt++) {
    const task = build(newTaskId());
    try {
      await ctx.tasks.create(task);
      return task;
    } catch (err) {
      // Random ids: a collision is rare, and a second one in a row means something else is wrong.
      if (!(err instanceof TaskExistsError) || attempt >= 2) throw err;
    }
  }
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
