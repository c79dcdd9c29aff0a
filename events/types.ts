/**
 * The pipeline's events. Each is a CloudEvent whose `type` is one of EVENT_TYPES and whose
 * data is the payload type below; payloads are small (ids and object locations only): image
 * bytes never travel on the bus.
 */
export const EVENT_TYPES = {
  importRequested: 'io.imaging.import.requested',
  manifestReceived: 'io.imaging.manifest-received',
  bundleDecrypted: 'io.imaging.bundle-decrypted',
  diskConverted: 'io.imaging.disk-converted',
  validated: 'io.imaging.validated',
  registered: 'io.imaging.registered',
} as const;

export type EventType = (typeof EVENT_TYPES)[keyof typeof EVENT_TYPES];

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

export interface EventDataByType {
  'io.imaging.import.requested': TaskEventData;
  'io.imaging.manifest-received': TaskEventData;
  'io.imaging.bundle-decrypted': TaskEventData;
  'io.imaging.disk-converted': DiskConvertedData;
  'io.imaging.validated': TaskEventData;
  'io.imaging.registered': RegisteredData;
}

/** CloudEvent `source` attribute of events the service emits. */
export const EVENT_SOURCE_PREFIX = '/imaging';
