import type { CloudEvent } from 'cloudevents';
import { parseEventData } from '../../events/schema';
import { isTerminal, transition, updateTask } from '../../tasks/state-machine';
import type { Stage } from '../stage';
import type { StageDeps } from './deps';
import { eventLogFields } from './invoke-stage';
import { clearTaskOutputs, clientErrorMessage } from '../task-step';
import { leaseIsLive } from '../lease';
import { endInstanceWithDisk } from '../instance-group';

/** The status message of a task whose event could not be processed within the retry limit. */
export function giveUpStatusMessage(error: unknown): string {
  const client = clientErrorMessage(error);
  if (client) return client;
  const message = error instanceof Error ? error.message : String(error);
  return `ServerError: ${message || 'the import could not be processed'}`;
}

/**
 * Marks the task of a poison event failed, so the user sees a reason instead of a task that
 * never moves. A task that already ended (completed, cancelled, failed) is left alone.
 */
export async function failTaskOfAbandonedEvent(stage: Stage, deps: StageDeps, event: CloudEvent<unknown>, error: unknown): Promise<void> {
  let taskId: string;
  try {
    taskId = parseEventData(event).taskId;
  } catch (parseError) {
    deps.log.error({ ...eventLogFields(stage.name, event), err: parseError }, 'gave up on an event that names no task');
    return;
  }
  const statusMessage = giveUpStatusMessage(error).replace(/^ServerError: /, `ServerError: the ${stage.name} stage gave up: `);
  deps.log.error({ ...eventLogFields(stage.name, event), taskId, reason: statusMessage }, 'gave up on event; failing its task');
  const failed = await updateTask(deps.tasks, taskId, (doc) => {
    if (isTerminal(doc.state)) return undefined;
    // Another replica holds the task (it took over after this delivery's attempts): its work stands.
    if (leaseIsLive(doc)) return undefined;
    return transition(doc, 'failed', statusMessage);
  });
  if (failed?.state !== 'failed') return;
  await clearTaskOutputs(deps, failed, true);
  await endInstanceWithDisk(deps, failed);
}
