import { CloudEvent } from 'cloudevents';
import { decodeHeaderValue, encodeHeaderValue, fromNatsMessage, isCloudEventMessage, toNatsMessage } from '../../../events/nats-binding';
import { InvalidEventError } from '../../../events/schema';
import { makeEvent } from '../../../events/make-event';
import { EVENT_TYPES } from '../../../events/types';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

function diskConverted() {
  return makeEvent(
    EVENT_TYPES.diskConverted,
    {
      taskId: 'import-vol-0a1b2c3d',
      accountId: '123456789012',
      image: { bucket: 'imaging-images', key: 'images/import-vol-0a1b2c3d/disk.raw', size: 1 << 30, sha256: 'ab'.repeat(32) },
    },
    'convert',
  );
}

describe('toNatsMessage (binary content mode)', () => {
  test('puts every attribute in a ce- header, data as JSON payload, content-type from datacontenttype', () => {
    const event = diskConverted();
    const message = toNatsMessage(event);
    expect(message.subject).toBe('imaging.disk-converted');
    expect(message.headers).toEqual({
      'ce-specversion': '1.0',
      'ce-id': event.id,
      'ce-type': 'io.imaging.disk-converted',
      'ce-source': '/imaging/convert',
      'ce-subject': 'import-vol-0a1b2c3d',
      'ce-time': event.time,
      'content-type': 'application/json',
    });
    expect(JSON.parse(text(message.data))).toEqual(event.data);
  });

  test('always sends ce-specversion, even for an object that leaves it out', () => {
    const message = toNatsMessage({ id: '1', type: EVENT_TYPES.validated, source: '/x', data: { taskId: 't', accountId: 'a' } } as never);
    expect(message.headers['ce-specversion']).toBe('1.0');
  });

  test('sends extensions as ce-<name> headers', () => {
    const event = new CloudEvent({ type: EVENT_TYPES.validated, source: '/imaging/test', traceparent: '00-abc-def-01', attempts: 3, data: { a: 1 } });
    const message = toNatsMessage(event);
    expect(message.headers['ce-traceparent']).toBe('00-abc-def-01');
    expect(message.headers['ce-attempts']).toBe('3');
  });

  test('percent-encodes space, double quote, percent and non-ASCII (as UTF-8 bytes) in header values', () => {
    const event = new CloudEvent({ type: EVENT_TYPES.validated, source: '/imaging/test', subject: 'disk "ü" 100%€', note: 'a b', data: {} });
    const message = toNatsMessage(event);
    expect(message.headers['ce-note']).toBe('a%20b');
    expect(message.headers['ce-subject']).toBe('disk%20%22%C3%BC%22%20100%25%E2%82%AC');
    for (const value of Object.values(message.headers)) expect(value).toMatch(/^[\x21-\x7e]*$/);
  });

  test('refuses an event type outside io.imaging.*, which has no subject', () => {
    const event = new CloudEvent({ type: 'com.example.other', source: '/x', data: {} });
    expect(() => toNatsMessage(event)).toThrow(/no subject/);
  });
});

describe('header value encoding', () => {
  test.each(['plain', 'with space', '"quoted"', '50%', 'Ünïcödé ✓ 𝄞', '\t\n control', ''])('round-trips %j', (value) => {
    const encoded = encodeHeaderValue(value);
    expect(encoded).toMatch(/^[\x21-\x7e]*$/);
    expect(decodeHeaderValue(encoded)).toBe(value);
  });

  test('leaves other printable ASCII as is', () => {
    expect(encodeHeaderValue("/imaging/x?a=b&c=d#e:f@g+h'")).toBe("/imaging/x?a=b&c=d#e:f@g+h'");
  });

  test('refuses percent-encoded bytes that are not UTF-8', () => {
    expect(() => decodeHeaderValue('%FF%FE')).toThrow(InvalidEventError);
  });
});

describe('fromNatsMessage', () => {
  test('round-trips a pipeline event through binary mode', () => {
    const event = diskConverted();
    const back = fromNatsMessage(toNatsMessage(event));
    expect(back).toBeInstanceOf(CloudEvent);
    expect(back.id).toBe(event.id);
    expect(back.type).toBe(event.type);
    expect(back.source).toBe(event.source);
    expect(back.subject).toBe(event.subject);
    expect(back.time).toBe(event.time);
    expect(back.specversion).toBe('1.0');
    expect(back.datacontenttype).toBe('application/json');
    expect(back.data).toEqual(event.data);
  });

  test('round-trips extensions and awkward attribute values', () => {
    const event = new CloudEvent({
      type: EVENT_TYPES.validated,
      source: '/imaging/test',
      subject: 'disk "ü" 100%',
      note: 'tab\there, 50% "done" — ok',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      data: { taskId: 't', accountId: 'a' },
    });
    const back = fromNatsMessage(toNatsMessage(event));
    expect(back.source).toBe('/imaging/test');
    expect(back.subject).toBe('disk "ü" 100%');
    expect(back.note).toBe('tab\there, 50% "done" — ok');
    expect(back.traceparent).toBe(event.traceparent);
  });

  test('round-trips text and binary data', () => {
    const textEvent = new CloudEvent({ type: EVENT_TYPES.validated, source: '/s', datacontenttype: 'text/plain', data: 'héllo' });
    expect(fromNatsMessage(toNatsMessage(textEvent)).data).toBe('héllo');
    const raw = Uint8Array.from([0, 1, 2, 255]);
    const binaryEvent = new CloudEvent({ type: EVENT_TYPES.validated, source: '/s', datacontenttype: 'application/octet-stream', data: raw });
    const back = fromNatsMessage(toNatsMessage(binaryEvent));
    expect(Buffer.from(back.data as Uint8Array)).toEqual(Buffer.from(raw));
  });

  test('accepts header names in any case', () => {
    const back = fromNatsMessage({
      headers: { 'Ce-Specversion': '1.0', 'CE-ID': 'x1', 'ce-Type': EVENT_TYPES.validated, 'ce-source': '/s', 'Content-Type': 'application/json' },
      data: bytes('{"taskId":"t","accountId":"a"}'),
    });
    expect(back.id).toBe('x1');
    expect(back.data).toEqual({ taskId: 't', accountId: 'a' });
  });

  test('accepts structured mode (application/cloudevents+json)', () => {
    const payload = {
      specversion: '1.0',
      id: 's1',
      type: EVENT_TYPES.registered,
      source: '/imaging/register',
      subject: 'import-vol-12345678',
      datacontenttype: 'application/json',
      data: { taskId: 'import-vol-12345678', accountId: '1', resourceId: 'vol-12345678' },
    };
    const back = fromNatsMessage({ headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' }, data: bytes(JSON.stringify(payload)) });
    expect(back.id).toBe('s1');
    expect(back.type).toBe(EVENT_TYPES.registered);
    expect(back.data).toEqual(payload.data);
  });

  test('accepts an event without data', () => {
    const back = fromNatsMessage({ headers: { 'ce-specversion': '1.0', 'ce-id': 'e', 'ce-type': 't.x', 'ce-source': '/s' }, data: new Uint8Array() });
    expect(back.data).toBeUndefined();
  });

  const required = { 'ce-specversion': '1.0', 'ce-id': 'e1', 'ce-type': EVENT_TYPES.validated, 'ce-source': '/s' };
  test.each(Object.keys(required))('rejects a binary message without %s', (missing) => {
    const headers: Record<string, string> = { ...required };
    delete headers[missing];
    expect(() => fromNatsMessage({ headers, data: bytes('{}') })).toThrow(new RegExp(`missing ${missing.slice(3)}`));
  });

  test('rejects a message with no headers at all', () => {
    expect(() => fromNatsMessage({ data: bytes('{"taskId":"t"}') })).toThrow(InvalidEventError);
  });

  test('rejects structured events missing required attributes, and payloads that are not JSON objects', () => {
    const structured = { 'content-type': 'application/cloudevents+json' };
    expect(() => fromNatsMessage({ headers: structured, data: bytes('{"specversion":"1.0","id":"x","type":"t"}') })).toThrow(/missing source/);
    expect(() => fromNatsMessage({ headers: structured, data: bytes('not json') })).toThrow(InvalidEventError);
    expect(() => fromNatsMessage({ headers: structured, data: bytes('[1,2]') })).toThrow(InvalidEventError);
  });

  test('rejects spec versions other than 1.0', () => {
    expect(() => fromNatsMessage({ headers: { ...required, 'ce-specversion': '0.3' }, data: bytes('{}') })).toThrow(/only 1.0/);
  });

  test('rejects JSON content that is not JSON', () => {
    expect(() => fromNatsMessage({ headers: { ...required, 'content-type': 'application/json' }, data: bytes('{oops') })).toThrow(/not valid JSON/);
  });
});

describe('isCloudEventMessage', () => {
  test('recognises binary and structured messages, and nothing else', () => {
    expect(isCloudEventMessage(toNatsMessage(diskConverted()).headers)).toBe(true);
    expect(isCloudEventMessage({ 'Content-Type': 'application/cloudevents+json' })).toBe(true);
    expect(isCloudEventMessage({ 'ce-id': 'x', 'ce-type': 't', 'ce-source': '/s' })).toBe(false);
    expect(isCloudEventMessage({ 'content-type': 'application/json' })).toBe(false);
    expect(isCloudEventMessage(undefined)).toBe(false);
  });
});
