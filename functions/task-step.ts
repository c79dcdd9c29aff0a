/**
 * What every stage does around its own work: find the task in the expected state (or drop a
 * redelivered event), honour a cancellation, record a failure the user can act on, and advance
 * the task with a compare-and-set before emitting the next event.
 */
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
import { RetryLater } from '../events/bus';
import { DEFAULT_PHASE_DEADLINE_MS, PhaseDeadline } from './phase-deadline';
import { claimTask, holdsLease, releaseLease, renewLease, type Attempt } from './lease';
import { republishOutbox } from './outbox';
import { clearPrefix, clearTaskOutputs, imagePrefix } from './leftovers';
import { endInstanceWithDisk } from './instance-group';

export { clearTaskOutputs, imagePrefix };

/**
 * What to do with an event whose task this stage cannot claim: an unknown or ended task drops
 * it; a cancelled one is ended now; a task already past this step means the event is a
 * redelivery after the step was done, so the step's outcome (its outbox event, which may have
 * been lost with a crash or a failed publish) is published again under its own id.
 */
async function settleUnclaimed(ctx: StageContext, taskId: string, task: TaskDocument | undefined, expected: TaskState, stage: string): Promise<void> {
  if (!task) {
    ctx.log.warn({ taskId, stage }, 'event for an unknown task dropped');
    return;
  }
  if (isTerminal(task.state)) {
    // The disk of an instance whose ending was cut short (a crash after the task ended): the
    // rest of the instance ends now. A no-op for every other task, and when it was done before.
    await endInstanceWithDisk(ctx, task);
    return;
  }
  if (task.cancelRequested) {
    await cancelTask(ctx, taskId);
    return;
  }
  if (task.state !== expected) {
    ctx.log.info({ taskId, stage, state: task.state, expected }, 'redelivered or out-of-order event: its step is done; publishing the step\'s outcome again');
    await republishOutbox(ctx.publish, task);
  }
}

/** Where one attempt writes its outputs: a stale attempt never writes over a newer one's. */
export function attemptPrefix(taskId: string, attempt: Attempt | undefined): string {
  return `${imagePrefix(taskId)}attempt-${attempt?.epoch ?? 0}/`;
}

/**
 * Ends a task as cancelled (by the user, or by expiry), removing any converted output. A disk
 * of an instance takes the instance and its other disks with it (instance-group.ts).
 */
export async function cancelTask(ctx: StageContext, taskId: string, message?: string): Promise<void> {
  const done = await updateTask(ctx.tasks, taskId, (doc) => {
    if (isTerminal(doc.state)) return undefined;
    return transition(doc, 'cancelled', message ?? doc.cancelRequested?.reason ?? 'Canceled by user');
  });
  if (done?.state !== 'cancelled') return;
  await clearTaskOutputs(ctx, done);
  await endInstanceWithDisk(ctx, done);
}

/**
 * Ends a task as failed, removing whatever its attempts wrote to the image store. A disk of an
 * instance takes the instance and its other disks with it (instance-group.ts).
 */
export async function failTask(ctx: StageContext, taskId: string, statusMessage: string): Promise<void> {
  const done = await updateTask(ctx.tasks, taskId, (doc) => (isTerminal(doc.state) ? undefined : transition(doc, 'failed', statusMessage)));
  if (done?.state !== 'failed') return;
  await clearTaskOutputs(ctx, done, true);
  await endInstanceWithDisk(ctx, done);
}

/**
 * Ends a task as failed by `stage` with `artifacts` (the stage's report) kept on it, in one
 * compare-and-set, so a user reads why next to the message. Only while the task is in the state
 * the stage's row expects and, for a leased attempt, only by the lease holder: a stale replica's
 * verdict is dropped. The converted image stays where it is. A disk of an instance takes the
 * instance and its other disks with it, as with failTask. Resolves to the task as it is after
 * (failed, or as someone else left it), as updateTask does.
 */
export async function failKeeping(
  ctx: StageContext,
  stage: StageName,
  taskId: string,
  statusMessage: string,
  artifacts: Partial<TaskDocument['artifacts']>,
): Promise<TaskDocument | undefined> {
  const attempt = ctx.attempt;
  const done = await updateTask(ctx.tasks, taskId, (doc) =>
    doc.state !== rowOf(stage).expects || (attempt && !holdsLease(doc, attempt))
      ? undefined
      : transition({ ...doc, artifacts: { ...doc.artifacts, ...artifacts }, lease: undefined }, 'failed', statusMessage),
  );
  if (done?.state === 'failed') await endInstanceWithDisk(ctx, done);
  return done;
}

/**
 * Before an attempt writes, the multipart uploads and objects of earlier attempts at the task
 * (a killed or superseded replica's) are aborted and deleted. The first attempt has none.
 */
export async function clearPredecessors(ctx: StageContext, taskId: string): Promise<void> {
  const attempt = ctx.attempt;
  if (!attempt || attempt.epoch <= 1) return;
  const mine = attemptPrefix(taskId, attempt);
  const cleared = await clearPrefix(ctx.s3, ctx.config.imageBucket, imagePrefix(taskId), (key) => key.startsWith(mine));
  if (cleared.abortedUploads + cleared.deletedObjects > 0) {
    ctx.log.info({ taskId, epoch: attempt.epoch, ...cleared }, 'removed what earlier attempts left behind');
  }
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
      // Aborted because another replica took the task over: leave the task to it.
      if (ctx.signal?.aborted) {
        ctx.log.warn({ taskId }, 'lease lost while working; the newer attempt carries on');
        return;
      }
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
  const attempt = ctx.attempt;
  let event: ReturnType<typeof makeEvent> | undefined;
  const moved = await advanceTask(
    ctx.tasks,
    taskId,
    [row.expects as TaskState],
    row.movesTo as TaskState,
    (doc) => {
      const data = { taskId, accountId: doc.accountId, ...(extra[0] ?? {}) } as EventDataByType[EventType];
      // The id names the step, so every publication of this outcome is one JetStream message.
      event = makeEvent(row.emits as EventType, data, stage, `${taskId}/${row.movesTo}`);
      return {
        ...patch(doc),
        progress: Math.max(doc.progress, row.progress[1]),
        outbox: { id: event.id, type: event.type, source: event.source, data: data as unknown as Record<string, unknown> },
        lease: undefined,
        wakeAt: undefined,
      };
    },
    statusMessage,
    // Only the holder of the lease commits: a stale attempt's result is dropped.
    (doc) => !attempt || holdsLease(doc, attempt),
  );
  if (moved && ctx.config.exitAfterAdvance === stage) {
    // Fault tests: a crash between the write and the publish (the outbox and sweeper recover it).
    ctx.log.error({ taskId, stage }, 'IMAGING_TEST_EXIT_AFTER_ADVANCE: exiting before the publish');
    process.exit(86);
  }
  if (moved && event) await ctx.publish(event);
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
      const leaseMs = ctx.config.leaseMs ?? DEFAULT_LEASE_MS;
      const claim = await claimTask(ctx.tasks, data.taskId, name, row.expects as TaskState, leaseMs);
      if (claim.kind === 'busy') {
        throw new RetryLater(Math.max(1000, claim.until - Date.now()), `task ${data.taskId} is being worked on by ${claim.holder}`);
      }
      if (claim.kind === 'not-here') {
        await settleUnclaimed(ctx, data.taskId, claim.task, row.expects as TaskState, name);
        return;
      }
      const lost = new AbortController();
      const deadline = new PhaseDeadline(name, ctx.config.phaseDeadlineMs ?? DEFAULT_PHASE_DEADLINE_MS, ctx.delivery);
      const attemptCtx: StageContext = { ...ctx, delivery: deadline.delivery, attempt: claim.attempt, signal: lost.signal };
      // Heartbeat through every phase of the work, not only while progress is reported: the
      // delivery stays ours (JetStream in-progress) and so does the lease.
      const beat = setInterval(() => {
        ctx.delivery.working();
        renewLease(ctx.tasks, data.taskId, claim.attempt, leaseMs).then(
          (held) => {
            if (!held && !lost.signal.aborted) lost.abort();
          },
          (err) => ctx.log.warn({ taskId: data.taskId, stage: name, err: String(err) }, 'lease renewal failed; will try again'),
        );
      }, Math.max(200, Math.min(leaseMs, ctx.config.ackWaitMs ?? row.ackWaitMs) / 3));
      try {
        await deadline.run(runStep(attemptCtx, data.taskId, () => spec.work(claim.task, data, attemptCtx)));
      } catch (err) {
        await releaseLease(ctx.tasks, data.taskId, claim.attempt).catch(() => undefined);
        // Past the phase deadline the work's own error (if any) is the abort's echo: name the deadline.
        throw deadline.expiredError ?? err;
      } finally {
        clearInterval(beat);
        deadline.end();
      }
    },
  };
}

/** How long a claim lasts without renewal (renewed every third of it while the work goes on). */
export const DEFAULT_LEASE_MS = 60_000;
