import { formatRangeRequest, type RangeResponseInfo } from './http1-wire';
import { Connection, IdleSocketLostError, originOf, type Origin } from './range-connection';
import { OriginPool } from './origin-pool';

export { BrokenResponseError, HttpStatusError, LocalResourceError, RangeMismatchError } from './range-errors';
export type { RangeResponseInfo } from './http1-wire';

export interface RangeGetClientOptions {
  /** Socket idle/response timeout while a request is in flight (default 120 s). */
  timeoutMs?: number;
  /**
   * Requests in flight per origin (scheme://host:port), and so sockets to it (default 16).
   * Requests beyond it wait, first come first served: however many reads callers start at once,
   * one origin never gets more requests in flight (nor this process more sockets for it).
   */
  connectionsPerOrigin?: number;
  /** Idle kept-alive sockets kept per origin (default 16). */
  maxIdlePerOrigin?: number;
  /** Bytes of each socket's fixed read buffer (default 256 KiB). */
  readBufferBytes?: number;
  /** Certificate authorities trusted for https: instead of Node's bundled ones (e.g. a test's self-signed certificate). */
  ca?: string | Buffer | (string | Buffer)[];
}

const DEFAULT_TIMEOUT_MS = 120_000;
const DEFAULT_CONNECTIONS_PER_ORIGIN = 16;
const DEFAULT_MAX_IDLE_PER_ORIGIN = 16;
const DEFAULT_READ_BUFFER_BYTES = 256 * 1024;

/**
 * Ranged HTTP(S) GETs whose body is copied exactly once: from the socket into caller memory
 * (range-connection.ts says why and how).
 *
 * It does only what ranged object reads need: one request at a time per socket, at most
 * `connectionsPerOrigin` requests in flight per origin with the rest queued, sockets kept alive
 * per origin (origin-pool.ts), a request that meets a kept-alive socket the server has meanwhile
 * closed sent again on a fresh one, and S3's XML error bodies decoded into HttpStatusError
 * (range-errors.ts). Retrying anything else (a 503, a broken body) is the caller's decision:
 * every error says whether it is `transient`; running out of descriptors (EMFILE) is a
 * LocalResourceError, not transient.
 */
export class RangeGetClient {
  private readonly timeoutMs: number;
  private readonly readBufferBytes: number;
  private readonly ca: string | Buffer | (string | Buffer)[] | undefined;
  private readonly pool: OriginPool<Connection>;

  constructor(options: RangeGetClientOptions = {}) {
    this.timeoutMs = positiveInteger(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs');
    const connectionsPerOrigin = positiveInteger(options.connectionsPerOrigin ?? DEFAULT_CONNECTIONS_PER_ORIGIN, 'connectionsPerOrigin');
    const maxIdlePerOrigin = options.maxIdlePerOrigin ?? DEFAULT_MAX_IDLE_PER_ORIGIN;
    if (!Number.isSafeInteger(maxIdlePerOrigin) || maxIdlePerOrigin < 0) {
      throw new RangeError(`maxIdlePerOrigin must be a whole number ≥ 0, not ${options.maxIdlePerOrigin}`);
    }
    this.readBufferBytes = positiveInteger(options.readBufferBytes ?? DEFAULT_READ_BUFFER_BYTES, 'readBufferBytes');
    this.ca = options.ca;
    this.pool = new OriginPool({ connectionsPerOrigin, maxIdlePerOrigin });
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
    const request = formatRangeRequest(url, `bytes=${offset}-${offset + target.length - 1}`, headers);

    return this.pool.withSlot(origin.key, async () => {
      const connection = this.pool.takeIdle(origin.key) ?? this.connect(origin);
      try {
        return await connection.exchange(request, offset, target);
      } catch (error) {
        // The server closed the kept-alive socket while it sat idle, and we only learnt it now.
        // Nothing of a response arrived, so the request is sent again, once, on a fresh socket.
        if (!(error instanceof IdleSocketLostError)) throw error;
        return await this.connect(origin).exchange(request, offset, target);
      }
    });
  }

  /** Destroys idle sockets; later calls open new ones. Requests in flight finish, and their sockets are then closed. */
  close(): void {
    this.pool.close();
  }

  private connect(origin: Origin): Connection {
    return new Connection(origin, this.pool.generation, {
      timeoutMs: this.timeoutMs,
      readBufferBytes: this.readBufferBytes,
      ca: this.ca,
      release: (connection) => this.pool.keep(connection),
      forget: (connection) => this.pool.forget(connection),
    });
  }
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive whole number, not ${value}`);
  return value;
}
