/**
 * Re-driving a failed task from its last good step: the task goes back from `failed` to the state
 * the stage that failed expects (one history entry saying so), and that stage's event is emitted
 * with a new id. Used by `imaging events replay` (the stage is the dead letter's) and
 * `imaging tasks retry` (the stage is read from the task's history).
 */
import type { CloudEvent } from 'cloudevents';
import { makeEvent } from '../../events/make-event';
import type { EventType } from '../../events/types';
import { isStageName, PIPELINE, rowOf, type PipelineRow } from '../../pipeline/table';
import { updateTask } from '../../tasks/state-machine';
import type { TaskStore } from '../../tasks/store';
import type { TaskDocument, TaskState } from '../../tasks/task';

export class RedriveError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedriveError';
  }
}

/** The stage a failed task stopped at: the one expecting the state it failed from. */
export function failedStageOf(doc: TaskDocument): PipelineRow {
  const failure = [...doc.history].reverse().find((entry) => entry.to === 'failed');
  if (doc.state !== 'failed' || !failure) throw new RedriveError(`task ${doc.id} is ${doc.state}, not failed`);
  const row = (PIPELINE as readonly PipelineRow[]).find((r) => r.expects === failure.from);
  if (!row) throw new RedriveError(`task ${doc.id} failed from ${failure.from ?? 'nothing'}, which no stage works on; it cannot be retried`);
  return row;
}

/**
 * Puts the task back where `stage` expects it (when it is failed; a task already there is left as
 * it is) and returns the event to publish. Refuses a task in any other state: re-driving a
 * running or finished task would do its work twice.
 */
export async function redriveTask(tasks: TaskStore, taskId: string, stage: string, actor: string, data?: object): Promise<CloudEvent<unknown>> {
  if (!isStageName(stage)) throw new RedriveError(`${JSON.stringify(stage)} is not a stage of the pipeline`);
  const row: PipelineRow = rowOf(stage);
  let refused: string | undefined;
  let moved: CloudEvent<unknown> | undefined;
  const doc = await updateTask(tasks, taskId, (current) => {
    refused = undefined;
    moved = undefined;
    if (current.state === row.expects) return undefined;
    if (current.state !== 'failed') {
      refused = `task ${taskId} is ${current.state}; only a failed task (or one waiting for the ${stage} stage) is re-driven`;
      return undefined;
    }
    const at = new Date().toISOString();
    const restored = { ...current, state: row.expects as TaskState };
    const event = makeEvent(row.consumes as EventType, (data ?? eventDataFromTask(restored, row)) as never, actor);
    moved = event;
    return {
      ...restored,
      statusMessage: row.statusMessage,
      updatedAt: at,
      history: [...current.history, { at, from: 'failed' as TaskState, to: row.expects as TaskState, message: `re-driven from the ${stage} stage by ${actor}` }],
      // The failed attempt's lease is over (its epoch is kept, so the next attempt's outputs get a
      // new key), and the event is the task's outbox: if its publish is lost, the sweeper sends it.
      ...(current.lease ? { lease: { ...current.lease, expiresAt: new Date(0).toISOString() } } : {}),
      outbox: { id: event.id, type: event.type, source: event.source, data: event.data as unknown as Record<string, unknown> },
      wakeAt: undefined,
    };
  });
  if (!doc) throw new RedriveError(`no task ${taskId}`);
  if (refused) throw new RedriveError(refused);
  return (moved ?? makeEvent(row.consumes as EventType, (data ?? eventDataFromTask(doc, row)) as never, actor)) as CloudEvent<unknown>;
}

/** The payload of the event `row` consumes, rebuilt from the task (its ids, and the converted image where that event carries it). */
function eventDataFromTask(doc: TaskDocument, row: PipelineRow): object {
  const ids = { taskId: doc.id, accountId: doc.accountId };
  if (row.consumes !== 'io.imaging.disk-converted') return ids;
  const image = doc.artifacts.image;
  if (!image?.sha256) throw new RedriveError(`task ${doc.id} has no converted image recorded; retry it from an earlier stage`);
  return { ...ids, image: { bucket: image.bucket, key: image.key, size: image.size, sha256: image.sha256 } };
}
