/** Runs a stage as a consumer of an event bus (JetStream in a Deployment, in-process in `imaging serve`). */
import type { EventBus, Subscription } from '../../events/bus';
import type { Stage } from '../stage';
import type { StageDeps } from './deps';
import { failTaskOfAbandonedEvent } from './give-up';
import { invokeStage } from './invoke-stage';

export interface StageRunOptions {
  /** Deliveries one process works on at once. */
  concurrency?: number;
  /** Attempts before the task is failed. */
  maxDeliver?: number;
  /** How long a delivery may go without progress (working()) before another replica gets it. */
  ackWaitMs?: number;
}

export async function runStageOnBus(stage: Stage, deps: StageDeps, bus: EventBus, opts: StageRunOptions = {}): Promise<Subscription> {
  const publish = (event: Parameters<EventBus['publish']>[0]) => bus.publish(event);
  return bus.subscribe(
    {
      // Replicas of a stage share one durable, so each event is worked on by one of them.
      durable: stage.name,
      types: [stage.consumes],
      concurrency: opts.concurrency,
      maxDeliver: opts.maxDeliver,
      ackWaitMs: opts.ackWaitMs,
      onGiveUp: (event, error) => failTaskOfAbandonedEvent(stage, deps, event, error),
    },
    (event, delivery) => invokeStage(stage, deps, publish, event, delivery),
  );
}
