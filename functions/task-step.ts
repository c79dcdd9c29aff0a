/**
 * What every stage does around its own work: find the task in the expected state (or drop a
 * redelivered event), honour a cancellation, record a failure the user can act on, and advance
 * the task with a compare-and-set before emitting the next event.
 */
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import type { TaskDocument, TaskState } from '../tasks/task';
import { advanceTask, isTerminal, transition, updateTask } from '../tasks/state-machine';
import { ImageFormatError } from '../toolkit/errors';
import { ManifestError } from '../toolkit/bundle/import-manifest';
import { ClientError } from './errors';
import type { Stage, StageContext } from './stage';
import type { EventDataByType, EventType, TaskEventData } from '../events/types';
import { parseEventData } from '../events/schema';
import { makeEvent } from '../events/make-event';
import { rowConsuming, rowOf, type ConsumedBy, type EmittedBy, type PipelineRow, type StageName } from '../pipeline/table';

/** The task if this stage should work on it now; undefined when the event is to be dropped. */
export async function beginStep(ctx: StageContext, taskId: string, expected: TaskState, stage: string): Promise<TaskDocument | undefined> {
  const task = await ctx.tasks.get(taskId);
  if (!task) {
    ctx.log.warn({ taskId, stage }, 'event for an unknown task dropped');
    return undefined;
  }
  if (isTerminal(task.state)) return undefined;
  if (task.cancelRequested) {
    await cancelTask(ctx, taskId);
    return undefined;
  }
  if (task.state !== expected) {
    ctx.log.info({ taskId, stage, state: task.state, expected }, 'redelivered or out-of-order event dropped');
    return undefined;
  }
  return task;
}

/** Key prefix under which a task's outputs live in the image store. */
export function imagePrefix(taskId: string): string {
  return `images/${taskId}/`;
}

/** Ends a task as cancelled (by the user, or by expiry), removing any converted output. */
export async function cancelTask(ctx: StageContext, taskId: string, message?: string): Promise<void> {
  const done = await updateTask(ctx.tasks, taskId, (doc) => {
    if (isTerminal(doc.state)) return undefined;
    return transition(doc, 'cancelled', message ?? doc.cancelRequested?.reason ?? 'Canceled by user');
  });
  const image = done?.artifacts.image;
  if (image && done?.state === 'cancelled') {
    await ctx.s3.send(new DeleteObjectCommand({ Bucket: image.bucket, Key: image.key })).catch(() => undefined);
  }
}

export async function failTask(ctx: StageContext, taskId: string, statusMessage: string): Promise<void> {
  await updateTask(ctx.tasks, taskId, (doc) => (isTerminal(doc.state) ? undefined : transition(doc, 'failed', statusMessage)));
}

/** Errors that are the image's or the request's fault: the task fails now, with the reason. */
export function clientErrorMessage(err: unknown): string | undefined {
  if (err instanceof ClientError || err instanceof ImageFormatError || err instanceof ManifestError) {
    return `ClientError: ${err.message}`;
  }
  return undefined;
}

/**
 * Runs a stage's work. A client error fails the task and the event is acknowledged; any other
 * error propagates so that the bus redelivers (and, past the retry limit, fails the task).
 */
export async function runStep(ctx: StageContext, taskId: string, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    // Handed back on shutdown: another replica takes the event over; the task is neither cancelled nor failed.
    if (ctx.delivery.signal?.aborted) throw err;
    if ((err as Error)?.name === 'ConversionCancelledError') {
      await cancelTask(ctx, taskId);
      return;
    }
    const message = clientErrorMessage(err);
    if (message) {
      ctx.log.info({ taskId, reason: message }, 'task failed on bad input');
      await failTask(ctx, taskId, message);
      return;
    }
    throw err;
  }
}

/** What the event a stage emits carries beyond the task's ids. */
type ExtraEventData<S extends StageName> = Omit<EventDataByType[EmittedBy<S>], keyof TaskEventData>;

/**
 * Ends a stage's work as its row in the pipeline table says: the task moves from the state the
 * stage expects to the one it leaves, its progress to the end of the stage's share and its
 * status message to the next stage's, and the row's next event is emitted with `extra` in it.
 * A lost race (someone else advanced the task) emits nothing.
 */
export async function advanceToNext<S extends StageName>(
  ctx: StageContext,
  stage: S,
  taskId: string,
  patch: (doc: TaskDocument) => Partial<TaskDocument>,
  ...extra: keyof ExtraEventData<S> extends never ? [] : [ExtraEventData<S>]
): Promise<TaskDocument | undefined> {
  const row: PipelineRow = rowOf(stage);
  // The task's next status is what the stage that takes it over shows; past the last stage, none.
  const statusMessage = rowConsuming(row.emits)?.statusMessage ?? '';
  const moved = await advanceTask(
    ctx.tasks,
    taskId,
    [row.expects as TaskState],
    row.movesTo as TaskState,
    (doc) => ({ ...patch(doc), progress: Math.max(doc.progress, row.progress[1]) }),
    statusMessage,
  );
  if (moved) {
    const data = { taskId, accountId: moved.accountId, ...(extra[0] ?? {}) } as EventDataByType[EventType];
    await ctx.publish(makeEvent(row.emits as EventType, data, stage));
  }
  return moved;
}

/**
 * A stage that works on a task in the state its row expects: validates the event its row
 * consumes, finds the task in that state (dropping redeliveries and honouring cancellation),
 * and runs `work` with client errors turned into a failed task.
 */
export function taskStage<S extends StageName>(
  name: S,
  spec: { work(task: TaskDocument, data: EventDataByType[ConsumedBy<S>], ctx: StageContext): Promise<void> },
): Stage<S> {
  const row: PipelineRow = rowOf(name);
  return {
    name,
    consumes: row.consumes,
    async handle(event, ctx) {
      const data = parseEventData(event, row.consumes as EventType) as EventDataByType[ConsumedBy<S>];
      const task = await beginStep(ctx, data.taskId, row.expects as TaskState, name);
      if (!task) return;
      await runStep(ctx, data.taskId, () => spec.work(task, data, ctx));
    },
  };
}
