/**
 * Where pipeline events live on NATS. One stream holds every event type; each type has its
 * own subject so a consumer can filter on exactly the type it handles (nats-server 2.9
 * allows a single filter subject per consumer).
 */
export const STREAM_NAME = 'IMAGING';
export const STREAM_SUBJECTS = ['imaging.>'];

/**
 * Events given up on after their last delivery, one subject per stage. Its own prefix: a stream's
 * subjects may not overlap another's, and imaging.> belongs to the pipeline stream.
 */
export const DEAD_LETTER_STREAM = 'IMAGING_DEAD';
export const DEAD_LETTER_SUBJECTS = ['imaging-dead.>'];

/** 'convert' → 'imaging-dead.convert' (the durable name of the consumer that gave up). */
export function deadLetterSubjectFor(durable: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(durable)) throw new Error(`durable name ${JSON.stringify(durable)} is not a valid subject token`);
  return `imaging-dead.${durable}`;
}

/** Headers a dead letter carries besides the event's own. */
export const DEAD_LETTER_HEADERS = { stage: 'Imaging-Dead-Stage', reason: 'Imaging-Dead-Reason', at: 'Imaging-Dead-At' } as const;

const TYPE_PREFIX = 'io.imaging.';
const SUBJECT_PREFIX = 'imaging.';

/** 'io.imaging.manifest-received' → 'imaging.manifest-received'. */
export function subjectFor(type: string): string {
  if (!type.startsWith(TYPE_PREFIX) || type.length === TYPE_PREFIX.length) {
    throw new Error(`event type ${JSON.stringify(type)} is not an io.imaging.* type and has no subject`);
  }
  const subject = SUBJECT_PREFIX + type.slice(TYPE_PREFIX.length);
  // A wildcard, whitespace or empty token would make a subject that matches other types.
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(subject)) {
    throw new Error(`event type ${JSON.stringify(type)} does not map to a valid NATS subject`);
  }
  return subject;
}

/**
 * The durable consumer for one event type of a subscription: the durable name itself when the
 * subscription has one type, `${durable}-${index}` otherwise. Both buses use it, so the same
 * subscription means the same consumers everywhere.
 */
export function consumerNameFor(durable: string, types: readonly string[], index: number): string {
  return types.length === 1 ? durable : `${durable}-${index}`;
}
