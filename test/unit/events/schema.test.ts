import { CloudEvent } from 'cloudevents';
import { InvalidEventError, parseEventData } from '../../../events/schema';
import { makeEvent } from '../../../events/make-event';
import { EVENT_TYPES } from '../../../events/types';

const task = { taskId: 'import-vol-0a1b2c3d', accountId: '123456789012' };
const image = { bucket: 'imaging-images', key: 'images/import-vol-0a1b2c3d/disk.raw', size: 8 << 20, sha256: 'c0'.repeat(32) };

function eventOf(type: string, data: unknown, extra: Record<string, unknown> = {}) {
  return new CloudEvent<unknown>({ id: 'e1', type, source: '/imaging/test', data, ...extra }, false);
}

describe('parseEventData', () => {
  test.each([EVENT_TYPES.importRequested, EVENT_TYPES.manifestReceived, EVENT_TYPES.bundleDecrypted, EVENT_TYPES.validated])(
    'accepts the task payload of %s and drops unknown fields',
    (type) => {
      expect(parseEventData(eventOf(type, { ...task, extra: 'x' }))).toEqual(task);
    },
  );

  test('accepts disk-converted with its image and registered with its resource id', () => {
    expect(parseEventData(makeEvent(EVENT_TYPES.diskConverted, { ...task, image }, 'convert'))).toEqual({ ...task, image });
    expect(parseEventData(eventOf(EVENT_TYPES.registered, { ...task, resourceId: 'vol-0a1b2c3d' }))).toEqual({ ...task, resourceId: 'vol-0a1b2c3d' });
  });

  test('accepts data that arrives as JSON text or bytes', () => {
    expect(parseEventData(eventOf(EVENT_TYPES.validated, JSON.stringify(task)))).toEqual(task);
    expect(parseEventData(eventOf(EVENT_TYPES.validated, Buffer.from(JSON.stringify(task))))).toEqual(task);
  });

  test.each([
    ['taskId missing', { accountId: '1' }, /taskId must be a non-empty string/],
    ['taskId empty', { taskId: ' ', accountId: '1' }, /taskId must be a non-empty string/],
    ['accountId a number', { taskId: 't', accountId: 123 }, /accountId must be a non-empty string/],
    ['data null', null, /data must be a JSON object/],
    ['data an array', [task], /data must be a JSON object/],
    ['data not JSON', '{nope', /not valid JSON/],
  ])('refuses a task payload with %s', (_why, data, message) => {
    expect(() => parseEventData(eventOf(EVENT_TYPES.manifestReceived, data))).toThrow(message);
    expect(() => parseEventData(eventOf(EVENT_TYPES.manifestReceived, data))).toThrow(InvalidEventError);
  });

  test.each([
    ['no image', { ...task }, /data.image must be an object/],
    ['empty bucket', { ...task, image: { ...image, bucket: '' } }, /bucket must be a non-empty string/],
    ['no key', { ...task, image: { ...image, key: undefined } }, /key must be a non-empty string/],
    ['negative size', { ...task, image: { ...image, size: -1 } }, /size must be a non-negative integer/],
    ['fractional size', { ...task, image: { ...image, size: 1.5 } }, /size must be a non-negative integer/],
    ['size as text', { ...task, image: { ...image, size: '10' } }, /size must be a non-negative integer/],
    ['short sha256', { ...task, image: { ...image, sha256: 'abc' } }, /sha256 must be 64 lowercase hex/],
  ])('refuses disk-converted with %s', (_why, data, message) => {
    expect(() => parseEventData(eventOf(EVENT_TYPES.diskConverted, data))).toThrow(message);
  });

  test('refuses registered without a resource id', () => {
    expect(() => parseEventData(eventOf(EVENT_TYPES.registered, task))).toThrow(/resourceId must be a non-empty string/);
  });

  test('refuses unknown types and other spec versions', () => {
    expect(() => parseEventData(eventOf('io.imaging.unheard-of', task))).toThrow(/unknown event type "io.imaging.unheard-of"/);
    expect(() => parseEventData(eventOf(EVENT_TYPES.validated, task, { specversion: '0.3' }))).toThrow(/specversion "0.3" is not supported/);
  });

  test('with an expected type, refuses an event of another type', () => {
    expect(parseEventData(eventOf(EVENT_TYPES.validated, task), EVENT_TYPES.validated)).toEqual(task);
    expect(() => parseEventData(eventOf(EVENT_TYPES.validated, task), EVENT_TYPES.manifestReceived)).toThrow(/expected type io.imaging.manifest-received/);
  });
});
