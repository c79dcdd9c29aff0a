/**
 * The pipeline's events. Each is a CloudEvent whose `type` is one of EVENT_TYPES and whose
 * data is the payload type below; payloads are small (ids and object locations only): image
 * bytes never travel on the bus. The types themselves come from the pipeline table.
 */
import { PIPELINE, type PipelineEventType } from '../pipeline/table';

export type EventType = PipelineEventType;

/** 'import.requested' → 'importRequested', 'disk-converted' → 'diskConverted'. */
type CamelCase<S extends string> = S extends `${infer Head}-${infer Tail}`
  ? `${Head}${Capitalize<CamelCase<Tail>>}`
  : S extends `${infer Head}.${infer Tail}`
    ? `${Head}${Capitalize<CamelCase<Tail>>}`
    : S;

type EventKey<T extends EventType> = T extends `io.imaging.${infer Name}` ? CamelCase<Name> : never;

function eventKey(type: string): string {
  return type.slice('io.imaging.'.length).replace(/[-.]([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Every event type of the pipeline table by a short name: EVENT_TYPES.diskConverted. */
export const EVENT_TYPES = Object.fromEntries(
  PIPELINE.flatMap((row) => [row.consumes, row.emits]).map((type) => [eventKey(type), type]),
) as { readonly [T in EventType as EventKey<T>]: T };

/** Every payload names its task; stages read everything else from the task document. */
export interface TaskEventData {
  taskId: string;
  accountId: string;
}

export interface DiskConvertedData extends TaskEventData {
  image: { bucket: string; key: string; size: number; sha256: string };
}

export interface RegisteredData extends TaskEventData {
  resourceId: string;
}

/** Events that carry more than the task's ids; every other event's payload is TaskEventData. */
export interface RicherPayloads {
  'io.imaging.disk-converted': DiskConvertedData;
  'io.imaging.registered': RegisteredData;
}
// A payload for an event the table does not have is a compile error here.
type OnlyPipelineEvents<K extends EventType> = K;
export type RicherPayloadType = OnlyPipelineEvents<keyof RicherPayloads>;

export type EventDataByType = { [T in EventType]: T extends RicherPayloadType ? RicherPayloads[T] : TaskEventData };

/** CloudEvent `source` attribute of events the service emits. */
export const EVENT_SOURCE_PREFIX = '/imaging';
