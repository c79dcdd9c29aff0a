import { Agent } from 'undici';
import { BrokenResponseError, localResourceError } from './range-errors';
import { RangeIntoHandler, type RangeResponseInfo } from './range-into-handler';
import { failedOnUsedSocket, reuseAwareConnector } from './reuse-aware-connector';

export { BrokenResponseError, HttpStatusError, LocalResourceError, RangeMismatchError } from './range-errors';
export type { RangeResponseInfo } from './range-into-handler';

export interface RangeGetClientOptions {
  /** How long a request may wait for its response head, or between two pieces of its body (default 120 s). */
  timeoutMs?: number;
  /**
   * Connections per origin (scheme://host:port), busy or idle (default 16). Requests beyond it
   * wait for a free connection: however many reads callers start at once, one origin never gets
   * more requests in flight (nor this process more sockets for it) than this.
   */
  connectionsPerOrigin?: number;
  /** Certificate authorities trusted for https: instead of Node's bundled ones (e.g. a test's self-signed certificate). */
  ca?: string | Buffer;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const DEFAULT_CONNECTIONS_PER_ORIGIN = 16;
/** How long an idle kept-alive socket is kept when the server does not say (S3 does not). */
const IDLE_SOCKET_MS = 10_000;
const CONNECT_TIMEOUT_MS = 10_000;
/** Headers that the client writes itself; a caller may not send them. */
const RESERVED_HEADERS = new Set(['host', 'range', 'connection', 'keep-alive', 'content-length', 'transfer-encoding', 'upgrade', 'te', 'expect']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A kept-alive socket that the server closed: what undici reports for it. */
const CONNECTION_LOSS = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);
const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * Ranged HTTP(S) GETs into caller memory, over undici: keep-alive sockets per origin, at most
 * `connectionsPerOrigin` of them per origin, requests beyond that queued.
 *
 * What it adds to undici is what ranged object reads need: the body is copied once, from undici's
 * chunks into the caller's target (RangeIntoHandler); a 206 for other bytes than asked for is
 * refused; S3's XML error bodies are decoded into HttpStatusError; a request that meets a
 * kept-alive socket the server closed while idle is sent once more; and every error says whether
 * it is `transient`. Retrying anything else (a 503, a broken body) is the caller's decision.
 * Running out of file descriptors here (EMFILE) is a LocalResourceError: not transient.
 */
export class RangeGetClient {
  private readonly timeoutMs: number;
  private readonly connectionsPerOrigin: number;
  private readonly ca: string | Buffer | undefined;
  private agent: Agent;

  constructor(options: RangeGetClientOptions = {}) {
    this.timeoutMs = positiveInteger(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs');
    this.connectionsPerOrigin = positiveInteger(options.connectionsPerOrigin ?? DEFAULT_CONNECTIONS_PER_ORIGIN, 'connectionsPerOrigin');
    this.ca = options.ca;
    this.agent = this.makeAgent();
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
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`only http: and https: URLs can be read, not ${url.protocol}`);
    checkHeaders(headers);
    const request: RangeRequest = { url, offset, target, headers: { ...headers, Range: `bytes=${offset}-${offset + target.length - 1}` } };
    // A request that met a kept-alive socket the server closed while it sat idle (nothing of a
    // response arrived) is sent again. undici picks the socket, and the next may be another
    // stale one: each such failure destroys a distinct socket, so after at most the pool's
    // size of them the request goes out on a fresh one. A fresh socket's failure is final.
    for (let resends = 0; ; resends++) {
      try {
        return await this.send(request, resends < this.connectionsPerOrigin);
      } catch (error) {
        if (!(error instanceof IdleSocketLostError)) throw error;
      }
    }
  }

  /** Closes idle sockets; later calls open new ones. Requests in flight finish, and their sockets are then closed. */
  close(): void {
    const old = this.agent;
    this.agent = this.makeAgent();
    old.close().catch(() => undefined);
  }

  private makeAgent(): Agent {
    return new Agent({
      connections: this.connectionsPerOrigin,
      pipelining: 1,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      keepAliveTimeout: IDLE_SOCKET_MS,
      connect: reuseAwareConnector({ ca: this.ca, timeout: CONNECT_TIMEOUT_MS, ALPNProtocols: ['http/1.1'] }),
    });
  }

  private send(request: RangeRequest, mayResend = true): Promise<RangeResponseInfo> {
    const { url } = request;
    const where = `${url.hostname.replace(/^\[|\]$/g, '')}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`;
    const handler = new RangeIntoHandler(request.offset, request.target, (error, state) => this.describe(error, state, where, url.protocol === 'https:', mayResend));
    this.agent.dispatch(
      // pathname + search exactly as the URL holds them: re-encoding would break a presigned signature.
      { origin: url.origin, path: `${url.pathname}${url.search}`, method: 'GET', headers: request.headers },
      handler,
    );
    return handler.settled;
  }

  /** One of our errors for an error undici reports, worded by how far the response got. */
  private describe(error: Error, handler: RangeIntoHandler, where: string, secure: boolean, mayResend: boolean): Error {
    const local = localResourceError(error, `cannot connect to ${where}`);
    if (local) return local;
    const code = (error as { code?: string }).code ?? '';
    const progress = handler.received > 0 || handler.answered
      ? `response from ${where} broke off after ${handler.received} of ${handler.target.length} body bytes`
      : `no response from ${where}`;
    if (TIMEOUTS.has(code)) {
      const limit = code === 'UND_ERR_CONNECT_TIMEOUT' ? CONNECT_TIMEOUT_MS : this.timeoutMs;
      return new BrokenResponseError(`${progress}: no data for ${limit} ms`, 'ETIMEDOUT');
    }
    if (code.startsWith('HPE_') || error.name === 'HTTPParserError') return new BrokenResponseError(`malformed response from ${where}: ${error.message}`, code);
    if (secure && (error as NodeJS.ErrnoException).syscall === undefined && !code.startsWith('UND_ERR') && !CONNECTION_LOSS.has(code)) {
      // Certificate or protocol trouble: the same the next time, so not a BrokenResponseError.
      return Object.assign(new Error(`TLS connection to ${where} failed: ${error.message}`, { cause: error }), { code });
    }
    if (mayResend && !handler.answered && CONNECTION_LOSS.has(code) && failedOnUsedSocket(error)) {
      return new IdleSocketLostError(`kept-alive connection to ${where} was closed: ${error.message}`, code);
    }
    return new BrokenResponseError(`${progress}: ${error.message}`, code || undefined);
  }
}

interface RangeRequest {
  url: URL;
  offset: number;
  target: Buffer;
  headers: Record<string, string>;
}

/** Thrown for a reused socket that ended or reset before any response byte; never leaves the client. */
class IdleSocketLostError extends BrokenResponseError {}

function checkHeaders(headers: Record<string, string>): void {
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name) || RESERVED_HEADERS.has(name.toLowerCase())) throw new TypeError(`header "${name}" cannot be sent by the caller`);
    if (/[\r\n\0]/.test(value)) throw new TypeError(`header "${name}" has a line break or NUL in its value`);
  }
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive whole number, not ${value}`);
  return value;
}
