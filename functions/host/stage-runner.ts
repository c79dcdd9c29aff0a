/** Runs a stage as a consumer of an event bus (JetStream in a Deployment, in-process in `imaging serve`). */
import type { EventBus, SubscribeOptions, Subscription } from '../../events/bus';
import { rowOf } from '../../pipeline/table';
import type { Stage } from '../stage';
import type { StageDeps } from './deps';
import { failTaskOfAbandonedEvent } from './give-up';
import { invokeStage } from './invoke-stage';

/** Overrides of the stage's row in the pipeline table (pipeline/table.ts), which gives the defaults. */
export interface StageRunOptions {
  /** Deliveries one process works on at once. */
  concurrency?: number;
  /** Attempts before the task is failed. */
  maxDeliver?: number;
  /** How long a delivery may go without progress (working()) before another replica gets it. */
  ackWaitMs?: number;
}

/** The consumer a stage runs on a bus: its row's event and defaults, with `opts` over them. */
export function subscriptionOf(stage: Stage, opts: StageRunOptions = {}): Omit<SubscribeOptions, 'onGiveUp'> {
  const row = rowOf(stage.name);
  return {
    // Replicas of a stage share one durable, so each event is worked on by one of them.
    durable: row.stage,
    types: [row.consumes],
    concurrency: opts.concurrency ?? row.concurrency,
    maxDeliver: opts.maxDeliver ?? row.maxDeliver,
    ackWaitMs: opts.ackWaitMs ?? row.ackWaitMs,
  };
}

export async function runStageOnBus(stage: Stage, deps: StageDeps, bus: EventBus, opts: StageRunOptions = {}): Promise<Subscription> {
  const publish = (event: Parameters<EventBus['publish']>[0]) => bus.publish(event);
  return bus.subscribe(
    {
      ...subscriptionOf(stage, opts),
      onGiveUp: (event, error) => {
        deps.metrics?.eventsDeadLettered.inc({ stage: stage.name });
        return failTaskOfAbandonedEvent(stage, deps, event, error);
      },
    },
    (event, delivery) => invokeStage(stage, deps, publish, event, delivery),
  );
}
