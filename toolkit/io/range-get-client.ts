import * as net from 'net';
import * as tls from 'tls';

export interface RangeGetClientOptions {
  /** Socket idle/response timeout while a request is in flight (default 120 s). */
  timeoutMs?: number;
  /** Idle kept-alive sockets kept per origin (default 16). */
  maxIdlePerOrigin?: number;
  /** Bytes of each socket's fixed read buffer (default 256 KiB). */
  readBufferBytes?: number;
  /** Certificate authorities trusted for https: instead of Node's bundled ones (e.g. a test's self-signed certificate). */
  ca?: string | Buffer;
}

export interface RangeResponseInfo {
  etag?: string;
  /** The object's size from Content-Range; undefined when the server answered '*'. */
  totalSize?: number;
}

/** The server answered with a status other than 206 (a 200 means it ignored the Range header). */
export class HttpStatusError extends Error {
  override name = 'HttpStatusError';
  /** Worth another try: 5xx, 429 (too many requests), 408 (request timeout). */
  readonly transient: boolean;

  constructor(
    readonly status: number,
    /** S3's <Code> from an XML error body, e.g. 'NoSuchKey', 'SlowDown'. */
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
    this.transient = status >= 500 || status === 429 || status === 408;
  }
}

/**
 * The exchange broke before a whole response arrived: connection refused or reset, timeout, a body
 * shorter than announced, bytes that are not a well-formed response. Always worth another try.
 */
export class BrokenResponseError extends Error {
  override name = 'BrokenResponseError';
  readonly transient = true;

  constructor(
    message: string,
    /** The socket error's code (ECONNRESET, ETIMEDOUT, …) when there was one. */
    readonly code?: string,
  ) {
    super(message);
  }
}

/**
 * A 206 for bytes other than the ones asked for. Asking again will not help: the object (or the
 * server's idea of it) differs from what the caller expects.
 */
export class RangeMismatchError extends Error {
  override name = 'RangeMismatchError';
  readonly transient = false;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const DEFAULT_MAX_IDLE_PER_ORIGIN = 16;
const DEFAULT_READ_BUFFER_BYTES = 256 * 1024;
/** A response head longer than this is refused; S3's are well under 2 KiB. */
const MAX_HEAD_BYTES = 16 * 1024;
/** Bytes of an error body kept for its <Code> and <Message>. */
const MAX_ERROR_BODY_BYTES = 8 * 1024;
/** Headers that this client writes itself; a caller may not send them. */
const RESERVED_HEADERS = new Set(['host', 'range', 'connection', 'keep-alive', 'content-length', 'transfer-encoding', 'upgrade', 'te']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CR = 13;
const LF = 10;

interface Origin {
  key: string;
  secure: boolean;
  host: string;
  port: number;
}

/**
 * Ranged HTTP(S) GETs whose body is copied exactly once: from the socket into caller memory.
 *
 * Node's http client (and so the SDK's GetObject) allocates a new 64 KiB buffer for every socket
 * read, and llhttp then copies every body chunk into yet another new buffer; heaptrack put ~48 MiB
 * of our 256 MiB bound in those dead buffers at peak, plus the CPU to make and collect them. Here
 * each socket reads into ONE fixed buffer of its own (the `onread` option of net/tls.connect), a
 * small parser of our own reads the response head, and the body goes from that buffer straight
 * into the caller's target: nothing is allocated per chunk.
 *
 * It does only what ranged object reads need: one request at a time per socket, sockets kept alive
 * per origin, a request that meets a kept-alive socket the server has meanwhile closed is sent
 * again on a fresh one, and S3's XML error bodies are decoded into HttpStatusError. Retrying
 * anything else (a 503, a broken body) is the caller's decision: every error says whether it is
 * `transient`.
 */
export class RangeGetClient {
  private readonly timeoutMs: number;
  private readonly maxIdlePerOrigin: number;
  private readonly readBufferBytes: number;
  private readonly ca: string | Buffer | undefined;
  /** Kept-alive sockets with no request in flight, per origin; the most recently used last. */
  private readonly idle = new Map<string, Connection[]>();
  /** Bumped by close(): sockets opened before it are not kept once their request is done. */
  private generation = 0;

  constructor(options: RangeGetClientOptions = {}) {
    this.timeoutMs = positiveInteger(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs');
    this.maxIdlePerOrigin = options.maxIdlePerOrigin ?? DEFAULT_MAX_IDLE_PER_ORIGIN;
    if (!Number.isSafeInteger(this.maxIdlePerOrigin) || this.maxIdlePerOrigin < 0) {
      throw new RangeError(`maxIdlePerOrigin must be a whole number ≥ 0, not ${options.maxIdlePerOrigin}`);
    }
    this.readBufferBytes = positiveInteger(options.readBufferBytes ?? DEFAULT_READ_BUFFER_BYTES, 'readBufferBytes');
    this.ca = options.ca;
  }

  /**
   * GETs bytes [offset, offset + target.length) of `url` (http: or https:) into `target`.
   * The URL's path and query go out exactly as the URL object holds them (a presigned URL's
   * signature covers them byte for byte). `headers` are sent as given (e.g. If-Match).
   * On failure `target` may hold some of the bytes.
   */
  async getRangeInto(url: URL, offset: number, target: Buffer, headers: Record<string, string> = {}): Promise<RangeResponseInfo> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`invalid offset ${offset}`);
    if (target.length === 0) throw new RangeError('a range request needs at least one byte');
    if (!Number.isSafeInteger(offset + target.length)) throw new RangeError(`range ${offset}+${target.length} is too large`);
    const origin = originOf(url);
    const last = offset + target.length - 1;
    const request = formatRequest(url, `bytes=${offset}-${last}`, headers);

    const connection = this.takeIdle(origin.key) ?? this.connect(origin);
    try {
      return await connection.exchange(request, offset, target);
    } catch (error) {
      // The server closed the kept-alive socket while it sat idle, and we only learnt it now.
      // Nothing of a response arrived, so the request is sent again, once, on a fresh socket.
      if (!(error instanceof IdleSocketLostError)) throw error;
      return await this.connect(origin).exchange(request, offset, target);
    }
  }

  /** Destroys idle sockets; later calls open new ones. Requests in flight finish, and their sockets are then closed. */
  close(): void {
    this.generation++;
    const all = [...this.idle.values()].flat();
    this.idle.clear();
    for (const connection of all) connection.destroy();
  }

  private connect(origin: Origin): Connection {
    return new Connection(origin, this.generation, {
      timeoutMs: this.timeoutMs,
      readBufferBytes: this.readBufferBytes,
      ca: this.ca,
      release: (connection) => this.release(connection),
      forget: (connection) => this.forget(connection),
    });
  }

  private takeIdle(originKey: string): Connection | undefined {
    const pool = this.idle.get(originKey);
    while (pool?.length) {
      const connection = pool.pop()!;
      if (connection.usable) return connection;
      connection.destroy();
    }
    return undefined;
  }

  /** A socket whose response was complete and which the server will keep open. */
  private release(connection: Connection): void {
    let pool = this.idle.get(connection.origin.key);
    if (connection.generation !== this.generation || (pool?.length ?? 0) >= this.maxIdlePerOrigin) {
      connection.destroy();
      return;
    }
    if (!pool) this.idle.set(connection.origin.key, (pool = []));
    pool.push(connection);
  }

  /** An idle socket that closed, failed, or received bytes nobody asked for. */
  private forget(connection: Connection): void {
    const pool = this.idle.get(connection.origin.key);
    const index = pool?.indexOf(connection) ?? -1;
    if (index >= 0) pool!.splice(index, 1);
  }
}

/** Thrown by a reused socket that ended or reset before any response byte; never leaves the client. */
class IdleSocketLostError extends BrokenResponseError {}

interface ConnectionHooks {
  timeoutMs: number;
  readBufferBytes: number;
  ca: string | Buffer | undefined;
  release(connection: Connection): void;
  forget(connection: Connection): void;
}

type Phase = 'head' | 'body' | 'error-body';

/** What one request in flight expects and has received so far. */
interface Exchange {
  offset: number;
  target: Buffer;
  resolve(info: RangeResponseInfo): void;
  reject(error: Error): void;
  /** The socket carried a response before this one. */
  reused: boolean;
  /** Any byte of the response has arrived. */
  answered: boolean;
  phase: Phase;
  /** Bytes of the response head gathered in Connection.head. */
  headLength: number;
  /** Body bytes copied into target. */
  received: number;
  info: RangeResponseInfo;
  keepAlive: boolean;
  status: number;
  reason: string;
  errorBody?: { bytes: Buffer; length: number; chunked: boolean };
}

/**
 * One socket and the request in flight on it. All of the socket's reads land in `readBuffer`;
 * the response head is gathered in `head` (it may arrive in pieces), the body is copied into the
 * exchange's target.
 */
class Connection {
  readonly socket: net.Socket;
  private readonly readBuffer: Buffer;
  private readonly head: Buffer;
  private current: Exchange | undefined;
  private responses = 0;
  /** Set before 'secureConnect' of an https socket: a failure then is about TLS, not the network. */
  private handshaking: boolean;

  constructor(
    readonly origin: Origin,
    readonly generation: number,
    private readonly hooks: ConnectionHooks,
  ) {
    // One allocation per socket: the read buffer and, after it, room for a response head.
    const memory = Buffer.allocUnsafeSlow(hooks.readBufferBytes + MAX_HEAD_BYTES);
    this.readBuffer = memory.subarray(0, hooks.readBufferBytes);
    this.head = memory.subarray(hooks.readBufferBytes);
    const onread: net.OnReadOpts = {
      buffer: this.readBuffer,
      callback: (length: number, buffer: Uint8Array) => {
        this.onRead(buffer as Buffer, length);
        return true; // keep reading: every read is consumed at once, so there is no backpressure to apply
      },
    };
    const { host, port } = origin;
    this.handshaking = origin.secure;
    if (origin.secure) {
      // servername is for SNI and certificate checks by name; an IP is checked as the host.
      const servername = net.isIP(host) ? undefined : host;
      // tls.connect takes `onread` as net.connect does (Node docs); @types/node does not declare it.
      const options: tls.ConnectionOptions & { onread: net.OnReadOpts } = { host, port, servername, ca: hooks.ca, onread, ALPNProtocols: ['http/1.1'] };
      this.socket = tls.connect(options);
      this.socket.once('secureConnect', () => (this.handshaking = false));
    } else {
      this.socket = net.connect({ host, port, onread });
    }
    this.socket.setNoDelay(true);
    this.socket.setKeepAlive(true, 30_000);
    this.socket.on('error', (error) => this.onError(error));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('close', () => this.onEnd());
    this.socket.on('timeout', () => this.onTimeout());
  }

  /** Open, idle, and not yet known to be closed by the server. */
  get usable(): boolean {
    return !this.current && !this.socket.destroyed && this.socket.readyState === 'open';
  }

  destroy(): void {
    this.socket.destroy();
  }

  exchange(request: string, offset: number, target: Buffer): Promise<RangeResponseInfo> {
    return new Promise<RangeResponseInfo>((resolve, reject) => {
      this.current = {
        offset,
        target,
        resolve,
        reject,
        reused: this.responses > 0,
        answered: false,
        phase: 'head',
        headLength: 0,
        received: 0,
        info: {},
        keepAlive: false,
        status: 0,
        reason: '',
      };
      this.socket.ref();
      this.socket.setTimeout(this.hooks.timeoutMs);
      this.socket.write(request, 'latin1');
    });
  }

  private succeed(exchange: Exchange): void {
    this.current = undefined;
    this.responses++;
    if (exchange.keepAlive) {
      this.socket.setTimeout(0);
      // An idle socket must not keep the process alive.
      this.socket.unref();
      this.hooks.release(this);
    } else {
      this.socket.destroy();
    }
    exchange.resolve(exchange.info);
  }

  /** Ends the exchange with an error; the socket is never reused after one. */
  private fail(exchange: Exchange, error: Error): void {
    this.current = undefined;
    this.socket.destroy();
    exchange.reject(error);
  }

  private onError(error: NodeJS.ErrnoException): void {
    const exchange = this.current;
    if (!exchange) {
      this.hooks.forget(this);
      return;
    }
    const where = `${this.origin.host}:${this.origin.port}`;
    if (this.handshaking && error.syscall === undefined) {
      // Certificate or protocol trouble: the same the next time, so not a BrokenResponseError.
      this.fail(exchange, Object.assign(new Error(`TLS connection to ${where} failed: ${error.message}`, { cause: error }), { code: error.code }));
    } else if (exchange.phase === 'error-body') {
      this.finishErrorBody(exchange);
    } else if (exchange.reused && !exchange.answered && isConnectionLoss(error.code)) {
      this.fail(exchange, new IdleSocketLostError(`kept-alive connection to ${where} was closed: ${error.message}`, error.code));
    } else {
      this.fail(exchange, new BrokenResponseError(`${this.describeProgress(exchange)}: ${error.message}`, error.code));
    }
  }

  /** The server closed the connection ('end'), or the socket closed for any reason ('close'). */
  private onEnd(): void {
    const exchange = this.current;
    if (!exchange) {
      this.hooks.forget(this);
      return;
    }
    if (exchange.phase === 'error-body') {
      this.finishErrorBody(exchange);
    } else if (exchange.reused && !exchange.answered) {
      this.fail(exchange, new IdleSocketLostError(`kept-alive connection to ${this.origin.host}:${this.origin.port} was closed`));
    } else {
      this.fail(exchange, new BrokenResponseError(`${this.describeProgress(exchange)}: connection closed`));
    }
  }

  private onTimeout(): void {
    const exchange = this.current;
    if (!exchange) {
      this.socket.destroy();
      return;
    }
    if (exchange.phase === 'error-body') {
      this.finishErrorBody(exchange);
      return;
    }
    const error = new BrokenResponseError(`${this.describeProgress(exchange)}: no data for ${this.hooks.timeoutMs} ms`, 'ETIMEDOUT');
    this.fail(exchange, error);
  }

  private describeProgress(exchange: Exchange): string {
    const where = `${this.origin.host}:${this.origin.port}`;
    if (exchange.phase === 'body') return `response from ${where} broke off after ${exchange.received} of ${exchange.target.length} body bytes`;
    return exchange.answered ? `response head from ${where} broke off` : `no response from ${where}`;
  }

  /** Called synchronously for every socket read; `buffer` is readBuffer, overwritten by the next read. */
  private onRead(buffer: Buffer, length: number): void {
    const exchange = this.current;
    if (!exchange) {
      // Bytes nobody asked for on an idle socket: whatever the server meant, the socket is unusable.
      this.hooks.forget(this);
      this.socket.destroy();
      return;
    }
    exchange.answered = true;
    let at = 0;
    while (at < length && this.current === exchange) {
      if (exchange.phase === 'head') at = this.readHead(exchange, buffer, at, length);
      else if (exchange.phase === 'body') at = this.readBody(exchange, buffer, at, length);
      else at = this.readErrorBody(exchange, buffer, at, length);
    }
  }

  /** Gathers the response head; returns where the bytes after it start in `buffer`. */
  private readHead(exchange: Exchange, buffer: Buffer, start: number, end: number): number {
    const before = exchange.headLength;
    const taken = Math.min(end - start, this.head.length - before);
    buffer.copy(this.head, before, start, start + taken);
    exchange.headLength += taken;
    const blankLine = findBlankLine(this.head, Math.max(0, before - 3), exchange.headLength);
    if (blankLine < 0) {
      if (exchange.headLength === this.head.length) {
        this.fail(exchange, new BrokenResponseError(`malformed response: head longer than ${MAX_HEAD_BYTES} bytes`));
      }
      return end;
    }
    const bodyStart = start + (blankLine + 4 - before);
    this.startBody(exchange, this.head.toString('latin1', 0, blankLine));
    return bodyStart;
  }

  /** Acts on a complete response head: a 206 to copy, an error to read, or a refusal. */
  private startBody(exchange: Exchange, headText: string): void {
    let head: ParsedHead;
    try {
      head = parseHead(headText);
    } catch (error) {
      this.fail(exchange, new BrokenResponseError(`malformed response: ${(error as Error).message}`));
      return;
    }
    const { status, headers } = head;
    if (status >= 100 && status < 200 && status !== 101) {
      // Informational (100 Continue, 103 Early Hints): the real response follows.
      exchange.headLength = 0;
      return;
    }
    exchange.status = status;
    exchange.reason = head.reason;
    if (status === 206) {
      const first = exchange.offset;
      const last = exchange.offset + exchange.target.length - 1;
      const contentRange = headers.get('content-range');
      const match = contentRange === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/i.exec(contentRange);
      const total = match && match[3] !== '*' ? Number(match[3]) : undefined;
      if (!match || Number(match[1]) !== first || Number(match[2]) !== last || (total !== undefined && total <= last)) {
        const received = contentRange === undefined ? 'no Content-Range' : `Content-Range "${contentRange}"`;
        this.fail(exchange, new RangeMismatchError(`asked for bytes ${first}-${last}, the server answered 206 with ${received}`));
        return;
      }
      const contentLength = headers.get('content-length');
      if (headers.has('transfer-encoding') || contentLength === undefined || !/^\d+$/.test(contentLength) || Number(contentLength) !== exchange.target.length) {
        const framing = headers.has('transfer-encoding') ? `Transfer-Encoding "${headers.get('transfer-encoding')}"` : `Content-Length "${contentLength}"`;
        this.fail(exchange, new BrokenResponseError(`malformed response: 206 for ${exchange.target.length} bytes with ${framing}`));
        return;
      }
      exchange.info = { etag: headers.get('etag'), totalSize: total };
      const connection = headers.get('connection')?.toLowerCase() ?? '';
      exchange.keepAlive = !/\bclose\b/.test(connection) && (head.minorVersion === 1 || /\bkeep-alive\b/.test(connection));
      exchange.phase = 'body';
      return;
    }
    if (status === 200) {
      this.fail(exchange, new HttpStatusError(200, undefined, 'HTTP 200: the server ignored the Range request and sent the whole object'));
      return;
    }
    // Any other status: keep the start of the body for S3's <Code> and <Message>.
    const chunked = /\bchunked\b/i.test(headers.get('transfer-encoding') ?? '');
    const contentLength = Number(headers.get('content-length') ?? NaN);
    const noBody = status === 204 || status === 304 || (!chunked && contentLength === 0);
    const limit = noBody ? 0 : chunked || !Number.isSafeInteger(contentLength) ? MAX_ERROR_BODY_BYTES : Math.min(contentLength, MAX_ERROR_BODY_BYTES);
    exchange.errorBody = { bytes: Buffer.alloc(limit), length: 0, chunked };
    exchange.phase = 'error-body';
    if (limit === 0) this.finishErrorBody(exchange);
  }

  private readBody(exchange: Exchange, buffer: Buffer, start: number, end: number): number {
    const { target } = exchange;
    if (end - start > target.length - exchange.received) {
      this.fail(exchange, new BrokenResponseError(`malformed response: more than the ${target.length} bytes of Content-Length`));
      return end;
    }
    // The one copy of the body: from the socket's read buffer into the caller's memory.
    exchange.received += buffer.copy(target, exchange.received, start, end);
    if (exchange.received === target.length) this.succeed(exchange);
    return end;
  }

  private readErrorBody(exchange: Exchange, buffer: Buffer, start: number, end: number): number {
    const body = exchange.errorBody!;
    body.length += buffer.copy(body.bytes, body.length, start, Math.min(end, start + body.bytes.length - body.length));
    if (body.length === body.bytes.length || (body.chunked && dechunk(body.bytes.subarray(0, body.length)).complete)) {
      this.finishErrorBody(exchange);
    }
    return end;
  }

  /** Rejects with the status and what the error body says; the socket is not kept (the rest of the body is unread). */
  private finishErrorBody(exchange: Exchange): void {
    const { bytes, length, chunked } = exchange.errorBody!;
    const raw = bytes.subarray(0, length);
    const text = (chunked ? dechunk(raw).body : raw).toString('utf8');
    const code = xmlElement(text, 'Code');
    const message = xmlElement(text, 'Message');
    const summary = code ? `${code}${message ? `: ${message}` : ''}` : exchange.reason;
    this.fail(exchange, new HttpStatusError(exchange.status, code, `HTTP ${exchange.status}${summary ? ` ${summary}` : ''}`));
  }
}

interface ParsedHead {
  minorVersion: number;
  status: number;
  reason: string;
  /** Lower-case names; repeated headers joined with ', '. */
  headers: Map<string, string>;
}

function parseHead(text: string): ParsedHead {
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
function findBlankLine(bytes: Buffer, from: number, end: number): number {
  for (let i = from; i + 3 < end; i++) {
    if (bytes[i] === CR && bytes[i + 1] === LF && bytes[i + 2] === CR && bytes[i + 3] === LF) return i;
  }
  return -1;
}

/** The data of a chunked body, as far as it goes; complete once the last (empty) chunk is seen. */
function dechunk(raw: Buffer): { body: Buffer; complete: boolean } {
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

/** The text of the first <name>…</name> in an XML error body, entities decoded. */
function xmlElement(xml: string, name: string): string | undefined {
  const match = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
  if (!match) return undefined;
  const entities: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
  return match[1].replace(/&(amp|lt|gt|quot|apos);/g, (_, entity: string) => entities[entity]).trim();
}

function originOf(url: URL): Origin {
  const secure = url.protocol === 'https:';
  if (!secure && url.protocol !== 'http:') throw new TypeError(`only http: and https: URLs can be read, not ${url.protocol}`);
  // An IPv6 literal is [::1] in a URL and ::1 to connect to.
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port ? Number(url.port) : secure ? 443 : 80;
  return { key: `${url.protocol}//${url.host}`, secure, host, port };
}

function formatRequest(url: URL, range: string, headers: Record<string, string>): string {
  // pathname + search exactly as the URL holds them: re-encoding would break a presigned signature.
  let request = `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nRange: ${range}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name) || RESERVED_HEADERS.has(name.toLowerCase())) throw new TypeError(`header "${name}" cannot be sent by the caller`);
    if (/[\r\n\0]/.test(value)) throw new TypeError(`header "${name}" has a line break or NUL in its value`);
    request += `${name}: ${value}\r\n`;
  }
  return `${request}Connection: keep-alive\r\n\r\n`;
}

function isConnectionLoss(code: string | undefined): boolean {
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED';
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive whole number, not ${value}`);
  return value;
}
