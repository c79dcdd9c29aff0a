/**
 * The bytes of HTTP/1.1 that a ranged GET needs, as pure functions: the request written out,
 * a response head parsed, a 206 checked against the range asked for, a chunked error body read.
 * No sockets here; range-connection.ts feeds these the bytes it reads.
 */
import { BrokenResponseError, RangeMismatchError } from './range-errors';

export interface RangeResponseInfo {
  etag?: string;
  /** The object's size from Content-Range; undefined when the server answered '*'. */
  totalSize?: number;
}

/** A response head longer than this is refused; S3's are well under 2 KiB. */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Headers that this client writes itself; a caller may not send them. */
const RESERVED_HEADERS = new Set(['host', 'range', 'connection', 'keep-alive', 'content-length', 'transfer-encoding', 'upgrade', 'te']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CR = 13;
const LF = 10;

export interface ParsedHead {
  minorVersion: number;
  status: number;
  reason: string;
  /** Lower-case names; repeated headers joined with ', '. */
  headers: Map<string, string>;
}

/** The request for bytes `range` (e.g. "bytes=0-9") of `url`; throws a TypeError for a header the caller may not send. */
export function formatRangeRequest(url: URL, range: string, headers: Record<string, string>): string {
  // pathname + search exactly as the URL holds them: re-encoding would break a presigned signature.
  let request = `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nRange: ${range}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name) || RESERVED_HEADERS.has(name.toLowerCase())) throw new TypeError(`header "${name}" cannot be sent by the caller`);
    if (/[\r\n\0]/.test(value)) throw new TypeError(`header "${name}" has a line break or NUL in its value`);
    request += `${name}: ${value}\r\n`;
  }
  return `${request}Connection: keep-alive\r\n\r\n`;
}

/** Parses a response head (status line and headers, without the blank line); throws on anything that is not HTTP/1.x. */
export function parseHead(text: string): ParsedHead {
  const lines = text.split('\r\n');
  const statusLine = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!statusLine) throw new Error(`status line "${lines[0].slice(0, 80)}"`);
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).toLowerCase() : '';
    if (!TOKEN.test(name)) throw new Error(`header line "${line.slice(0, 80)}"`);
    const value = line.slice(colon + 1).trim();
    const earlier = headers.get(name);
    if (earlier === undefined) headers.set(name, value);
    else if (name === 'content-length') {
      if (earlier !== value) throw new Error(`conflicting Content-Length "${earlier}" and "${value}"`);
    } else headers.set(name, `${earlier}, ${value}`);
  }
  return { minorVersion: Number(statusLine[1]), status: Number(statusLine[2]), reason: statusLine[3] ?? '', headers };
}

/** Index of the "\r\n\r\n" ending a head in bytes [from, end) of `bytes`, or -1. */
export function findBlankLine(bytes: Buffer, from: number, end: number): number {
  for (let i = from; i + 3 < end; i++) {
    if (bytes[i] === CR && bytes[i + 1] === LF && bytes[i + 2] === CR && bytes[i + 3] === LF) return i;
  }
  return -1;
}

/**
 * What a 206 head says, once it is checked to be for exactly bytes [offset, offset + length),
 * framed by a Content-Length of that many bytes; else the error to fail the exchange with.
 */
export function checkPartialHead(head: ParsedHead, offset: number, length: number): { info: RangeResponseInfo; keepAlive: boolean } | Error {
  const { headers } = head;
  const last = offset + length - 1;
  const contentRange = headers.get('content-range');
  const match = contentRange === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/i.exec(contentRange);
  const total = match && match[3] !== '*' ? Number(match[3]) : undefined;
  if (!match || Number(match[1]) !== offset || Number(match[2]) !== last || (total !== undefined && total <= last)) {
    const received = contentRange === undefined ? 'no Content-Range' : `Content-Range "${contentRange}"`;
    return new RangeMismatchError(`asked for bytes ${offset}-${last}, the server answered 206 with ${received}`);
  }
  const contentLength = headers.get('content-length');
  if (headers.has('transfer-encoding') || contentLength === undefined || !/^\d+$/.test(contentLength) || Number(contentLength) !== length) {
    const framing = headers.has('transfer-encoding') ? `Transfer-Encoding "${headers.get('transfer-encoding')}"` : `Content-Length "${contentLength}"`;
    return new BrokenResponseError(`malformed response: 206 for ${length} bytes with ${framing}`);
  }
  const connection = headers.get('connection')?.toLowerCase() ?? '';
  const keepAlive = !/\bclose\b/.test(connection) && (head.minorVersion === 1 || /\bkeep-alive\b/.test(connection));
  return { info: { etag: headers.get('etag'), totalSize: total }, keepAlive };
}

/** The data of a chunked body, as far as it goes; complete once the last (empty) chunk is seen. */
export function dechunk(raw: Buffer): { body: Buffer; complete: boolean } {
  const pieces: Buffer[] = [];
  let at = 0;
  let complete = false;
  for (;;) {
    const lineEnd = raw.indexOf('\r\n', at, 'latin1');
    if (lineEnd < 0) break;
    const size = Number.parseInt(raw.toString('latin1', at, lineEnd), 16);
    if (!Number.isSafeInteger(size) || size < 0) break;
    if (size === 0) {
      complete = true;
      break;
    }
    const dataStart = lineEnd + 2;
    pieces.push(raw.subarray(dataStart, Math.min(dataStart + size, raw.length)));
    at = dataStart + size + 2;
    if (at > raw.length) break;
  }
  return { body: Buffer.concat(pieces), complete };
}
