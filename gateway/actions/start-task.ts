/** Recording a new import task and announcing it to the pipeline: the same for every import action. */
import { makeEvent } from '../../events/make-event';
import { transition, updateTask } from '../../tasks/state-machine';
import { TaskExistsError } from '../../tasks/store';
import type { TaskDocument, TaskKind, TaskRequest } from '../../tasks/task';
import type { ActionContext } from './action';

export const PENDING_UPLOAD_MESSAGE = 'Pending import-image upload';

/** Creates the task (waiting for its upload) and emits import.requested; resolves to the stored task. */
export async function startImportTask(kind: TaskKind, newTaskId: () => string, request: TaskRequest, ctx: ActionContext, extra: Pick<TaskDocument, 'tags'> = {}): Promise<TaskDocument> {
  const task = await createTask(kind, newTaskId, request, ctx, extra);
  try {
    await ctx.publish(makeEvent('io.imaging.import.requested', { taskId: task.id, accountId: task.accountId }, 'gateway'));
  } catch (err) {
    // Without its event no stage would ever pick the task up: fail it now rather than let it hang.
    await updateTask(ctx.tasks, task.id, (doc) => transition(doc, 'failed', 'The import could not be started; submit it again', ctx.now())).catch(() => undefined);
    throw err;
  }
  return task;
}

async function createTask(kind: TaskKind, newTaskId: () => string, request: TaskRequest, ctx: ActionContext, extra: Pick<TaskDocument, 'tags'>): Promise<TaskDocument> {
  const now = ctx.now();
  const at = now.toISOString();
  for (let attempt = 0; ; attempt++) {
    const task: TaskDocument = {
      id: newTaskId(),
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
    };
    try {
      await ctx.tasks.create(task);
      return task;
    } catch (err) {
      // 32 random bits: a collision is rare, and a second one in a row means something else is wrong.
      if (!(err instanceof TaskExistsError) || attempt >= 2) throw err;
    }
  }
}
