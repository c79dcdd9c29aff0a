import { CloudEvent } from 'cloudevents';
import { randomUUID } from 'crypto';
import { EVENT_SOURCE_PREFIX, type EventDataByType, type EventType } from './types';

/** Builds a pipeline CloudEvent; `source` says which part of the service emitted it. */
/** `id` defaults to a fresh UUID; a step's outcome uses an id of its own (see advanceToNext). */
export function makeEvent<T extends EventType>(type: T, data: EventDataByType[T], emitter: string, id: string = randomUUID()): CloudEvent<EventDataByType[T]> {
  return new CloudEvent<EventDataByType[T]>({
    specversion: '1.0',
    id,
    type,
    source: `${EVENT_SOURCE_PREFIX}/${emitter}`,
    subject: data.taskId,
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    data,
  });
}
