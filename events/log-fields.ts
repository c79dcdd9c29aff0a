import type { CloudEvent } from 'cloudevents';

/**
 * The ids every log line about an event carries: the CloudEvent id and the task and account its
 * data names. Read leniently: a malformed event still logs with what it has.
 */
export function eventLogIds(event: Pick<CloudEvent<unknown>, 'id' | 'data'>): { eventId: string | undefined; taskId: string | undefined; accountId: string | undefined } {
  const data = (typeof event.data === 'object' && event.data !== null ? event.data : {}) as Record<string, unknown>;
  const text = (value: unknown) => (typeof value === 'string' && value !== '' ? value : undefined);
  return { eventId: text(event.id), taskId: text(data.taskId), accountId: text(data.accountId) };
}
