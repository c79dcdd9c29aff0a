import type { CloudEventV1 } from 'cloudevents';
import { EVENT_TYPES, type DiskConvertedData, type EventDataByType, type EventType, type RegisteredData, type RicherPayloadType, type TaskEventData } from './types';

/** An event that cannot be acted on: wrong spec version, unknown type, or a malformed payload. */
export class InvalidEventError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidEventError';
  }
}

const KNOWN_TYPES: ReadonlySet<string> = new Set(Object.values(EVENT_TYPES));

export function isEventType(type: string): type is EventType {
  return KNOWN_TYPES.has(type);
}

type Fields = Record<string, unknown>;

/**
 * The typed payload of a pipeline event, validated field by field. Extra fields are dropped so
 * nothing unvalidated reaches a stage. When `expected` is given the event must be of that type.
 */
export function parseEventData<T extends EventType>(event: CloudEventV1<unknown>, expected?: T): EventDataByType[T] {
  if (event.specversion !== '1.0') {
    throw new InvalidEventError(`event ${event.id}: specversion ${JSON.stringify(event.specversion)} is not supported; only 1.0 is`);
  }
  if (!isEventType(event.type)) throw new InvalidEventError(`event ${event.id}: unknown event type ${JSON.stringify(event.type)}`);
  if (expected !== undefined && event.type !== expected) {
    throw new InvalidEventError(`event ${event.id}: expected type ${expected}, got ${event.type}`);
  }
  const where = `event ${event.id} (${event.type})`;
  const data = payloadObject(event.data, where);
  const parse = (RICHER_PARSERS as Partial<Record<EventType, PayloadParser<EventType>>>)[event.type] ?? taskData;
  return parse(data, where) as EventDataByType[T];
}

type PayloadParser<K extends EventType> = (data: Fields, where: string) => EventDataByType[K];

/** Parsers of the payloads that carry more than the task's ids; every other event's is taskData. */
const RICHER_PARSERS: { [K in RicherPayloadType]: PayloadParser<K> } = {
  'io.imaging.disk-converted': diskConvertedData,
  'io.imaging.registered': registeredData,
};

function taskData(data: Fields, where: string): TaskEventData {
  return { taskId: nonEmptyString(data, 'taskId', where), accountId: nonEmptyString(data, 'accountId', where) };
}

function diskConvertedData(data: Fields, where: string): DiskConvertedData {
  const image = data.image;
  if (!isObject(image)) throw new InvalidEventError(`${where}: data.image must be an object`);
  const at = `${where} image`;
  const size = image.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new InvalidEventError(`${at}: size must be a non-negative integer, got ${JSON.stringify(size)}`);
  }
  const sha256 = nonEmptyString(image, 'sha256', at);
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new InvalidEventError(`${at}: sha256 must be 64 lowercase hex digits`);
  return {
    ...taskData(data, where),
    image: { bucket: nonEmptyString(image, 'bucket', at), key: nonEmptyString(image, 'key', at), size, sha256 },
  };
}

function registeredData(data: Fields, where: string): RegisteredData {
  return { ...taskData(data, where), resourceId: nonEmptyString(data, 'resourceId', where) };
}

/** Data may arrive already parsed (JSON content type) or as text/bytes from a lenient transport. */
function payloadObject(data: unknown, where: string): Fields {
  let value = data;
  if (value instanceof Uint8Array) value = Buffer.from(value).toString('utf8');
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      throw new InvalidEventError(`${where}: data is not valid JSON`);
    }
  }
  if (!isObject(value)) throw new InvalidEventError(`${where}: data must be a JSON object`);
  return value;
}

function nonEmptyString(obj: Fields, field: string, where: string): string {
  const value = obj[field];
  if (typeof value !== 'string' || value.trim() === '') {
    throw new InvalidEventError(`${where}: ${field} must be a non-empty string, got ${JSON.stringify(value)}`);
  }
  return value;
}

function isObject(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}
