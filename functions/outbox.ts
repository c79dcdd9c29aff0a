/**
 * A task's outbox: the event that moved it into its present state, kept in the task document
 * by the same compare-and-set that changed the state. Publishing it again is always safe: the
 * id is the step's, so JetStream drops a copy within its duplicate window, and past it the
 * consuming stage finds the task claimed or done and lets the copy go.
 */
import { CloudEvent } from 'cloudevents';
import type { TaskDocument } from '../tasks/task';

/** Publishes the task's outbox event again; `idSuffix` makes a deliberate re-drive a new message. */
export async function republishOutbox(publish: (event: CloudEvent<unknown>) => Promise<void>, task: TaskDocument, idSuffix = ''): Promise<boolean> {
  const outbox = task.outbox;
  if (!outbox) return false;
  await publish(
    new CloudEvent<unknown>({
      specversion: '1.0',
      id: `${outbox.id}${idSuffix}`,
      type: outbox.type,
      source: outbox.source,
      subject: task.id,
      time: new Date().toISOString(),
      datacontenttype: 'application/json',
      data: outbox.data,
    }),
  );
  return true;
}
