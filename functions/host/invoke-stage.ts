import type { CloudEvent } from 'cloudevents';
import type { Delivery } from '../../events/bus';
import type { Stage, StageContext } from '../stage';
import type { StageDeps } from './deps';

export type Publish = (event: CloudEvent<unknown>) => Promise<void>;

/** Runs one delivery through a stage; every host (bus, HTTP) goes through here. */
export async function invokeStage(stage: Stage, deps: StageDeps, publish: Publish, event: CloudEvent<unknown>, delivery: Delivery): Promise<void> {
  const ctx: StageContext = { tasks: deps.tasks, s3: deps.s3, config: deps.config, publish, delivery, log: deps.log };
  try {
    await stage.handle(event, ctx);
  } catch (error) {
    // Logged here with the attempt because the host's reaction (redelivery) happens elsewhere.
    deps.log.warn({ stage: stage.name, eventId: event.id, type: event.type, attempt: delivery.attempt, err: error }, 'stage failed on this delivery');
    throw error;
  }
}
