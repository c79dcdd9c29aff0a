/**
 * CloudEvents over NATS messages, as a handful of pure functions (the shape of the CloudEvents
 * SDK's HTTP binding). We write binary content mode: attributes travel as `ce-<name>` headers
 * and the payload is the bare event data, so a consumer can route and filter without parsing
 * the body. We read both binary mode and structured mode (content-type
 * application/cloudevents+json), as the NATS protocol binding allows either.
 *
 * Header values are percent-encoded the way the HTTP binding requires (space, `"`, `%` and
 * anything outside printable ASCII, the latter as UTF-8 bytes), because NATS headers, like
 * HTTP ones, carry only visible ASCII reliably.
 */
import { CloudEvent, type CloudEventV1 } from 'cloudevents';
import { InvalidEventError } from './schema';
import { subjectFor } from './subjects';

/** A NATS message as the binding sees it: no connection, no JetStream metadata. */
export interface NatsMessage {
  subject: string;
  headers: Record<string, string>;
  data: Uint8Array;
}

export type IncomingNatsMessage = Pick<NatsMessage, 'data'> & { headers?: Record<string, string> };

const ATTRIBUTE_PREFIX = 'ce-';
const CONTENT_TYPE = 'content-type';
const STRUCTURED_CONTENT_TYPE = 'application/cloudevents+json';
const REQUIRED_ATTRIBUTES = ['specversion', 'id', 'source', 'type'] as const;
/** Members of the SDK's event object that are not attributes sent as headers. */
const NOT_HEADERS = new Set(['data', 'data_base64', 'datacontenttype']);

/** Binary content mode: attributes in `ce-` headers, data as the payload. */
export function toNatsMessage(event: CloudEventV1<unknown>): NatsMessage {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(event)) {
    if (NOT_HEADERS.has(name) || value === undefined || value === null) continue;
    headers[ATTRIBUTE_PREFIX + name] = encodeHeaderValue(attributeText(value));
  }
  // The SDK defaults specversion, but a hand-built object might not: the header is mandatory.
  headers[`${ATTRIBUTE_PREFIX}specversion`] = encodeHeaderValue(String(event.specversion ?? '1.0'));
  const { contentType, data } = encodeData(event);
  if (contentType) headers[CONTENT_TYPE] = contentType;
  return { subject: subjectFor(event.type), headers, data };
}

/** True when the headers carry a CloudEvent in either content mode. */
export function isCloudEventMessage(headers: Record<string, string> | undefined): boolean {
  const lower = lowerCaseKeys(headers);
  if (mediaType(lower[CONTENT_TYPE]) === STRUCTURED_CONTENT_TYPE) return true;
  return REQUIRED_ATTRIBUTES.every((name) => lower[ATTRIBUTE_PREFIX + name] !== undefined);
}

/** Decodes either content mode; throws InvalidEventError for anything that is not a valid 1.0 event. */
export function fromNatsMessage(message: IncomingNatsMessage): CloudEvent<unknown> {
  const headers = lowerCaseKeys(message.headers);
  return mediaType(headers[CONTENT_TYPE]) === STRUCTURED_CONTENT_TYPE ? fromStructured(message.data) : fromBinary(headers, message.data);
}

function fromBinary(headers: Record<string, string>, payload: Uint8Array): CloudEvent<unknown> {
  const attributes: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith(ATTRIBUTE_PREFIX)) attributes[name.slice(ATTRIBUTE_PREFIX.length)] = decodeHeaderValue(value);
  }
  requireAttributes(attributes);
  const contentType = headers[CONTENT_TYPE];
  if (contentType !== undefined) attributes.datacontenttype = contentType;
  const data = decodeData(payload, contentType);
  if (data !== undefined) attributes.data = data;
  return buildEvent(attributes);
}

function fromStructured(payload: Uint8Array): CloudEvent<unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8(payload));
  } catch {
    throw new InvalidEventError('structured CloudEvent payload is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidEventError('structured CloudEvent payload must be a JSON object');
  }
  const attributes = parsed as Record<string, unknown>;
  requireAttributes(attributes);
  return buildEvent(attributes);
}

function requireAttributes(attributes: Record<string, unknown>): void {
  const missing = REQUIRED_ATTRIBUTES.filter((name) => typeof attributes[name] !== 'string' || attributes[name] === '');
  if (missing.length > 0) throw new InvalidEventError(`message is not a CloudEvent: missing ${missing.join(', ')}`);
  if (attributes.specversion !== '1.0') {
    throw new InvalidEventError(`CloudEvents specversion ${JSON.stringify(attributes.specversion)} is not supported; only 1.0 is`);
  }
}

function buildEvent(attributes: Record<string, unknown>): CloudEvent<unknown> {
  try {
    return new CloudEvent<unknown>(attributes);
  } catch (error) {
    throw new InvalidEventError(`invalid CloudEvent: ${(error as Error).message.split('\n')[0]}`);
  }
}

function encodeData(event: CloudEventV1<unknown>): { contentType?: string; data: Uint8Array } {
  const data = event.data;
  const declared = event.datacontenttype;
  if (data === undefined || data === null) return { contentType: declared, data: new Uint8Array(0) };
  if (data instanceof Uint8Array) return { contentType: declared ?? 'application/octet-stream', data };
  if (typeof data === 'string' && !isJson(declared)) return { contentType: declared ?? 'text/plain', data: Buffer.from(data, 'utf8') };
  return { contentType: declared ?? 'application/json', data: Buffer.from(JSON.stringify(data), 'utf8') };
}

function decodeData(payload: Uint8Array, contentType: string | undefined): unknown {
  if (payload.length === 0) return undefined;
  if (contentType === undefined || isJson(contentType)) {
    try {
      return JSON.parse(utf8(payload));
    } catch {
      if (contentType !== undefined) throw new InvalidEventError(`event data is not valid JSON although content-type is ${contentType}`);
      return Buffer.from(payload);
    }
  }
  if (mediaType(contentType).startsWith('text/')) return utf8(payload);
  return Buffer.from(payload);
}

function isJson(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const type = mediaType(contentType);
  return type === 'application/json' || type.endsWith('+json');
}

function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0].trim().toLowerCase();
}

function attributeText(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  return String(value);
}

function lowerCaseKeys(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    const key = name.toLowerCase();
    if (!(key in out)) out[key] = value;
  }
  return out;
}

function utf8(bytes: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}

/** Percent-encodes space, `"`, `%` and every byte of a character outside U+0021..U+007E. */
export function encodeHeaderValue(value: string): string {
  let out = '';
  for (const char of value) {
    const code = char.codePointAt(0)!;
    if (code > 0x20 && code < 0x7f && char !== '"' && char !== '%') {
      out += char;
      continue;
    }
    for (const byte of Buffer.from(char, 'utf8')) out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** Reverses encodeHeaderValue; runs of %XX are decoded together as UTF-8. */
export function decodeHeaderValue(value: string): string {
  return value.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    const bytes = Buffer.from(run.replace(/%/g, ''), 'hex');
    try {
      return utf8(bytes);
    } catch {
      throw new InvalidEventError(`header value ${JSON.stringify(value)} is not valid percent-encoded UTF-8`);
    }
  });
}
