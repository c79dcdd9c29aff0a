/** Recording a new import task and announcing it to the pipeline: the same for every import action. */
import { makeEvent } from '../../events/make-event';
import { TaskExistsError } from '../../tasks/store';
import type { TaskDocument, TaskKind, TaskRequest } from '../../tasks/task';
import type { ActionContext } from './action';

export const PENDING_UPLOAD_MESSAGE = 'Pending import-image upload';

/** Creates the task (waiting for its upload) and emits import.requested; resolves to the stored task. */
export async function startImportTask(kind: TaskKind, newTaskId: () => string, request: TaskRequest, ctx: ActionContext): Promise<TaskDocument> {
  const task = await createTask(kind, newTaskId, request, ctx);
  const outbox = task.outbox!;
  try {
    await ctx.publish(makeEvent('io.imaging.import.requested', outbox.data as { taskId: string; accountId: string }, 'gateway', outbox.id));
  } catch (err) {
    // The task is recorded with its event in its outbox: the sweeper publishes it when the bus is back.
    ctx.log?.warn({ taskId: task.id, err: String(err) }, 'import.requested not published; the sweeper will publish it');
  }
  return task;
}

async function createTask(kind: TaskKind, newTaskId: () => string, request: TaskRequest, ctx: ActionContext): Promise<TaskDocument> {
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
      version: 0,
    };
    task.outbox = { id: `${task.id}/${task.state}`, type: 'io.imaging.import.requested', source: '/imaging/gateway', data: { taskId: task.id, accountId: task.accountId } };
    try {
      await ctx.tasks.create(task);
      return task;
    } catch (err) {
      // 32 random bits: a collision is rare, and a second one in a row means something else is wrong.
      if (!(err instanceof TaskExistsError) || attempt >= 2) throw err;
    }
  }
}
