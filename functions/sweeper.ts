/**
 * The sweeper re-drives tasks that nobody is moving. It is what makes "a state change and its
 * next event are one write" hold end to end: a task whose outbox event was lost (a crash or a
 * NATS outage between the write and the publish), whose upload re-check is due, or whose
 * cancellation no stage picked up (an instance waiting for its other disks among them: the
 * gateway only marks it, and ending it here removes its volume), is found here and moved on. Safe in every replica at once:
 * a re-drive publishes the task's outbox event under an id derived from the task and the time
 * window, so replicas sweeping together publish one JetStream message, and a task held under a
 * live lease is left to its holder.
 */
import type { CloudEvent } from 'cloudevents';
import type { TaskDocument } from '../tasks/task';
import { leaseIsLive } from './lease';
import { runPeriodically } from './periodic-pass';
import { waitsForOtherDisks } from '../tasks/instance-disks';
import { republishOutbox } from './outbox';
import { cancelTask } from './task-step';
import type { StageContext } from './stage';
import type { StageDeps } from './host/deps';

export interface SweeperOptions {
  /** How often to look (default 5 s). */
  intervalMs?: number;
  /** A task untouched this long with no live lease is re-driven (default 10 min). */
  idleMs?: number;
  /** Tasks looked at per sweep (default 10 000). */
  batch?: number;
}

export interface RunningSweeper {
  /** One sweep now (tests, and the loop). Resolves to the number of tasks moved on. */
  sweep(now?: number): Promise<number>;
  stop(): Promise<void>;
}

export function startSweeper(deps: StageDeps, publish: (event: CloudEvent<unknown>) => Promise<void>, options: SweeperOptions = {}): RunningSweeper {
  const intervalMs = options.intervalMs ?? 5000;
  const idleMs = options.idleMs ?? 600_000;
  const batch = options.batch ?? 10_000;
  const ctx: StageContext = { ...deps, publish, delivery: { attempt: 1, working: () => undefined } };

  async function redrive(task: TaskDocument, now: number): Promise<boolean> {
    // An instance task that only waits for its other disks is held by no stage, whatever its lease says.
    if (leaseIsLive(task, now) && !(task.cancelRequested && waitsForOtherDisks(task))) return false;
    if (task.cancelRequested) {
      await cancelTask(ctx, task.id);
      return true;
    }
    if (task.wakeAt) {
      if (Date.parse(task.wakeAt) > now) return false;
      return republishOutbox(publish, task, `/wake-${task.uploadChecks ?? 0}`);
    }
    if (now - Date.parse(task.updatedAt) < idleMs) return false;
    deps.log.warn({ taskId: task.id, accountId: task.accountId, state: task.state, idleSince: task.updatedAt }, 'task idle with no stage working on it: publishing its last event again');
    return republishOutbox(publish, task, `/redrive-${Math.floor(now / idleMs)}`);
  }

  async function sweep(now = Date.now()): Promise<number> {
    let moved = 0;
    for (const task of await deps.tasks.listUnfinished(batch)) {
      try {
        if (await redrive(task, now)) moved++;
      } catch (err) {
        deps.log.warn({ taskId: task.id, err: String(err) }, 'sweeper could not move a task on; next sweep tries again');
      }
    }
    return moved;
  }

  const passes = runPeriodically(sweep, intervalMs, (err) => deps.log.warn({ err: String(err) }, 'sweep failed; next one tries again'));
  return { sweep, stop: passes.stop };
}
