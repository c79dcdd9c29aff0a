/** Recording a new import task and announcing it to the pipeline: the same for every import action. */
import { makeEvent } from '../../events/make-event';
import { transition, updateTask } from '../../tasks/state-machine';
import { TaskExistsError } from '../../tasks/store';
import type { TaskDocument, TaskKind, TaskRequest } from '../../tasks/task';
import type { ActionContext } from './action';
import { withinOpenTaskCap } from './open-task-cap';

export const PENDING_UPLOAD_MESSAGE = 'Pending import-image upload';

/** Creates the task (waiting for its upload) and emits import.requested; resolves to the stored task. */
export async function startImportTask(kind: TaskKind, newTaskId: () => string, request: TaskRequest, ctx: ActionContext, extra: Pick<TaskDocument, 'tags'> = {}): Promise<TaskDocument> {
  const task = await withinOpenTaskCap(ctx, () => createTask(kind, newTaskId, request, ctx, extra));
  await announceTask(ctx, task, 'io.imaging.import.requested', 'import');
  return task;
}

/**
 * Emits the event that starts a new task's pipeline. Without it no stage would ever pick the
 * task up, so a failed publish fails the task now rather than let it hang, and the call fails.
 */
export async function announceTask(ctx: ActionContext, task: TaskDocument, type: 'io.imaging.import.requested' | 'io.imaging.export.requested', what: string): Promise<void> {
  try {
    await ctx.publish(makeEvent(type, { taskId: task.id, accountId: task.accountId }, 'gateway'));
  } catch (err) {
    await updateTask(ctx.tasks, task.id, (doc) => transition(doc, 'failed', `The ${what} could not be started; submit it again`, ctx.now())).catch(() => undefined);
    throw err;
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
  return createWithFreshId(ctx, newTaskId, (id) => ({
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
  }));
}
