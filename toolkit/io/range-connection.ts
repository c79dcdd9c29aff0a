import * as net from 'net';
import * as tls from 'tls';
import { MAX_HEAD_BYTES, checkPartialHead, dechunk, findBlankLine, parseHead, type ParsedHead, type RangeResponseInfo } from './http1-wire';
import { BrokenResponseError, HttpStatusError, httpStatusError, localResourceError } from './range-errors';

/** Bytes of an error body kept for its <Code> and <Message>. */
const MAX_ERROR_BODY_BYTES = 8 * 1024;

export interface Origin {
  /** scheme://host:port as the URL has it: what sockets are pooled by. */
  key: string;
  secure: boolean;
  host: string;
  port: number;
}

export function originOf(url: URL): Origin {
  const secure = url.protocol === 'https:';
  if (!secure && url.protocol !== 'http:') throw new TypeError(`only http: and https: URLs can be read, not ${url.protocol}`);
  // An IPv6 literal is [::1] in a URL and ::1 to connect to.
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port ? Number(url.port) : secure ? 443 : 80;
  return { key: `${url.protocol}//${url.host}`, secure, host, port };
}

/** Thrown by a reused socket that ended or reset before any response byte: the request may be sent again on a fresh one. */
export class IdleSocketLostError extends BrokenResponseError {}

export interface ConnectionOptions {
  timeoutMs: number;
  readBufferBytes: number;
  ca: string | Buffer | (string | Buffer)[] | undefined;
  /** The response was complete and the server keeps the socket open: it may carry another request. */
  release(connection: Connection): void;
  /** The socket closed, failed or received bytes nobody asked for while it had no request. */
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
 * One socket and the one request in flight on it, read with one copy of the body.
 *
 * Node's http client allocates a new 64 KiB buffer for every socket read and llhttp copies every
 * body chunk into yet another; heaptrack put ~48 MiB of our 256 MiB bound in those dead buffers
 * at peak. undici, tried in their place, allocates per chunk too: on bench:convert's S3 rows (1 GiB,
 * same machine, back to back) it took 39-44 MiB more peak RSS and 55% more CPU than this client.
 * Here every read of the socket lands in ONE fixed buffer of its own (the
 * `onread` option of net/tls.connect), the head is gathered beside it, and the body goes from that
 * buffer straight into the caller's target: nothing is allocated per chunk.
 */
export class Connection {
  readonly socket: net.Socket;
  private readonly readBuffer: Buffer;
  private readonly head: Buffer;
  private current: Exchange | undefined;
  private responses = 0;
  /** The TCP connection was made: a failure before it is "cannot connect". */
  private connected = false;
  /** Set before 'secureConnect' of an https socket: a failure then is about TLS, not the network. */
  private handshaking: boolean;

  constructor(
    readonly origin: Origin,
    /** The pool's generation when this socket opened (see OriginPool.close). */
    readonly generation: number,
    private readonly options: ConnectionOptions,
  ) {
    // One allocation per socket: the read buffer and, after it, room for a response head.
    const memory = Buffer.allocUnsafeSlow(options.readBufferBytes + MAX_HEAD_BYTES);
    this.readBuffer = memory.subarray(0, options.readBufferBytes);
    this.head = memory.subarray(options.readBufferBytes);
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
      const tlsOptions: tls.ConnectionOptions & { onread: net.OnReadOpts } = { host, port, servername, ca: options.ca, onread, ALPNProtocols: ['http/1.1'] };
      this.socket = tls.connect(tlsOptions);
      this.socket.once('secureConnect', () => (this.handshaking = false));
    } else {
      this.socket = net.connect({ host, port, onread });
    }
    this.socket.once('connect', () => (this.connected = true));
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

  /** Sends `request` (for bytes [offset, offset + target.length)) and copies the body into `target`. */
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
      this.socket.setTimeout(this.options.timeoutMs);
      this.socket.write(request, 'latin1');
    });
  }

  private get where(): string {
    return `${this.origin.host}:${this.origin.port}`;
  }

  private succeed(exchange: Exchange): void {
    this.current = undefined;
    this.responses++;
    if (exchange.keepAlive) {
      this.socket.setTimeout(0);
      // An idle socket must not keep the process alive.
      this.socket.unref();
      this.options.release(this);
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
      this.options.forget(this);
      return;
    }
    // Out of descriptors or socket memory: this process's fault, and not worth a blind retry.
    const local = localResourceError(error, this.connected ? this.describeProgress(exchange) : `cannot connect to ${this.where}`);
    if (local) {
      this.fail(exchange, local);
    } else if (this.handshaking && error.syscall === undefined) {
      // Certificate or protocol trouble: the same the next time, so not a BrokenResponseError.
      this.fail(exchange, Object.assign(new Error(`TLS connection to ${this.where} failed: ${error.message}`, { cause: error }), { code: error.code }));
    } else if (exchange.phase === 'error-body') {
      this.finishErrorBody(exchange);
    } else if (exchange.reused && !exchange.answered && isConnectionLoss(error.code)) {
      this.fail(exchange, new IdleSocketLostError(`kept-alive connection to ${this.where} was closed: ${error.message}`, error.code));
    } else {
      this.fail(exchange, new BrokenResponseError(`${this.describeProgress(exchange)}: ${error.message}`, error.code));
    }
  }

  /** The server closed the connection ('end'), or the socket closed for any reason ('close'). */
  private onEnd(): void {
    const exchange = this.current;
    if (!exchange) {
      this.options.forget(this);
      return;
    }
    if (exchange.phase === 'error-body') {
      this.finishErrorBody(exchange);
    } else if (exchange.reused && !exchange.answered) {
      this.fail(exchange, new IdleSocketLostError(`kept-alive connection to ${this.where} was closed`));
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
    this.fail(exchange, new BrokenResponseError(`${this.describeProgress(exchange)}: no data for ${this.options.timeoutMs} ms`, 'ETIMEDOUT'));
  }

  private describeProgress(exchange: Exchange): string {
    if (exchange.phase === 'body') return `response from ${this.where} broke off after ${exchange.received} of ${exchange.target.length} body bytes`;
    return exchange.answered ? `response head from ${this.where} broke off` : `no response from ${this.where}`;
  }

  /** Called synchronously for every socket read; `buffer` is readBuffer, overwritten by the next read. */
  private onRead(buffer: Buffer, length: number): void {
    const exchange = this.current;
    if (!exchange) {
      // Bytes nobody asked for on an idle socket: whatever the server meant, the socket is unusable.
      this.options.forget(this);
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
      const checked = checkPartialHead(head, exchange.offset, exchange.target.length);
      if (checked instanceof Error) {
        this.fail(exchange, checked);
        return;
      }
      exchange.info = checked.info;
      exchange.keepAlive = checked.keepAlive;
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
    this.fail(exchange, httpStatusError(exchange.status, exchange.reason, text));
  }
}

function isConnectionLoss(code: string | undefined): boolean {
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED';
}
