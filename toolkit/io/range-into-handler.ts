import type { Dispatcher } from 'undici';
import { BrokenResponseError, HttpStatusError, RangeMismatchError, httpStatusError } from './range-errors';

export interface RangeResponseInfo {
  etag?: string;
  /** The object's size from Content-Range; undefined when the server answered '*'. */
  totalSize?: number;
}

/** Bytes of an error body kept for its <Code> and <Message>. */
const MAX_ERROR_BODY_BYTES = 8 * 1024;

type IncomingHeaders = Record<string, string | string[] | undefined>;

/**
 * An undici dispatch handler for one ranged GET whose body goes straight into caller memory:
 * each chunk undici hands over is copied once, into `target`, and nothing else is kept. A 206
 * must be for exactly the bytes asked for; any other status is an HttpStatusError decoded from
 * the start of its (S3 XML) body.
 *
 * `settled` resolves once: with the response's ETag and the object's size, or with the first
 * error, the handler's own or the one undici reports (`failed` maps that one).
 */
export class RangeIntoHandler implements Dispatcher.DispatchHandler {
  /** Any part of a response (status line and headers) arrived. */
  answered = false;
  /** Body bytes copied into target. */
  received = 0;
  readonly settled: Promise<RangeResponseInfo>;
  private resolve!: (info: RangeResponseInfo) => void;
  private reject!: (error: Error) => void;
  private done = false;
  private info: RangeResponseInfo = {};
  private errorStatus: { status: number; reason: string; body: Buffer[]; bytes: number } | undefined;

  constructor(
    private readonly offset: number,
    readonly target: Buffer,
    /** Turns an error undici reports into one of ours. */
    private readonly failed: (error: Error, handler: RangeIntoHandler) => Error,
  ) {
    this.settled = new Promise<RangeResponseInfo>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Present so that undici takes this for a handler of its current API (onRequestStart …), not the old one. */
  onRequestStart(): void {}

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHeaders, statusMessage?: string): void {
    if (statusCode < 200) return; // informational: the real response follows
    this.answered = true;
    if (statusCode === 206) {
      const problem = this.checkPartial(headers);
      if (problem) return this.abort(controller, problem);
      return;
    }
    if (statusCode === 200) {
      return this.abort(controller, new HttpStatusError(200, undefined, 'HTTP 200: the server ignored the Range request and sent the whole object'));
    }
    this.errorStatus = { status: statusCode, reason: statusMessage ?? '', body: [], bytes: 0 };
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.done) return;
    const error = this.errorStatus;
    if (error) {
      error.body.push(chunk.subarray(0, MAX_ERROR_BODY_BYTES - error.bytes));
      error.bytes += Math.min(chunk.length, MAX_ERROR_BODY_BYTES - error.bytes);
      // Enough of a long error body: the rest is not read (and the socket not kept).
      if (error.bytes >= MAX_ERROR_BODY_BYTES) this.abort(controller, this.statusError());
      return;
    }
    const { target } = this;
    if (chunk.length > target.length - this.received) {
      return this.abort(controller, new BrokenResponseError(`malformed response: more than the ${target.length} bytes of Content-Length`));
    }
    // The one copy of the body: from undici's chunk into the caller's memory.
    this.received += chunk.copy(target, this.received);
  }

  onResponseEnd(): void {
    if (this.errorStatus) return this.settle(this.statusError());
    if (this.received !== this.target.length) {
      return this.settle(new BrokenResponseError(`malformed response: ${this.received} of ${this.target.length} body bytes`));
    }
    this.settle(undefined);
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.settle(this.failed(error, this));
  }

  private checkPartial(headers: IncomingHeaders): Error | undefined {
    const first = this.offset;
    const last = this.offset + this.target.length - 1;
    const contentRange = single(headers['content-range']);
    const match = contentRange === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/i.exec(contentRange);
    const total = match && match[3] !== '*' ? Number(match[3]) : undefined;
    if (!match || Number(match[1]) !== first || Number(match[2]) !== last || (total !== undefined && total <= last)) {
      const received = contentRange === undefined ? 'no Content-Range' : `Content-Range "${contentRange}"`;
      return new RangeMismatchError(`asked for bytes ${first}-${last}, the server answered 206 with ${received}`);
    }
    const contentLength = single(headers['content-length']);
    const transferEncoding = single(headers['transfer-encoding']);
    if (transferEncoding !== undefined || contentLength === undefined || !/^\d+$/.test(contentLength) || Number(contentLength) !== this.target.length) {
      const framing = transferEncoding !== undefined ? `Transfer-Encoding "${transferEncoding}"` : `Content-Length "${contentLength}"`;
      return new BrokenResponseError(`malformed response: 206 for ${this.target.length} bytes with ${framing}`);
    }
    this.info = { etag: single(headers.etag), totalSize: total };
    return undefined;
  }

  private statusError(): HttpStatusError {
    const { status, reason, body } = this.errorStatus!;
    return httpStatusError(status, reason, Buffer.concat(body).toString('utf8'));
  }

  /** Ends the exchange with `error`; undici drops the socket (the rest of the response is unread). */
  private abort(controller: Dispatcher.DispatchController, error: Error): void {
    this.settle(error);
    controller.abort(error);
  }

  private settle(error: Error | undefined): void {
    if (this.done) return;
    this.done = true;
    if (error) this.reject(error);
    else this.resolve(this.info);
  }
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}
