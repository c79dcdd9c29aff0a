import { checkRange } from './file-source';
import { isFirstByteOnly } from './range-quirks';
import { withRetries } from './retry';
import type { RandomAccessSource } from './source';

/**
 * A byte range source over plain HTTP(S) — typically a presigned S3 GET URL from an import
 * manifest. The server must honour Range requests; a server that answers 200 with the whole
 * body, or a range other than the one asked for, is refused rather than trusted.
 */
export class HttpRangeSource implements RandomAccessSource {
  constructor(
    private readonly url: string,
    readonly size: number,
    readonly name: string,
    private readonly options: { attempts?: number; baseDelayMs?: number; timeoutMs?: number } = {},
  ) {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid size ${size} for ${name}`);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, offset, length);
    if (length === 0) return Buffer.alloc(0);
    if (isFirstByteOnly(offset, length, this.size)) return (await this.read(0, 2)).subarray(0, 1);
    return withRetries(() => this.fetchRange(offset, length), {
      attempts: this.options.attempts ?? 4,
      baseDelayMs: this.options.baseDelayMs ?? 250,
      isTransient: (error) => error instanceof TransientHttpError,
    });
  }

  async close(): Promise<void> {}

  private async fetchRange(offset: number, length: number): Promise<Buffer> {
    const last = offset + length - 1;
    let response: Response;
    try {
      response = await fetch(this.url, {
        headers: { Range: `bytes=${offset}-${last}` },
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 120_000),
      });
    } catch (error) {
      // Connection refused/reset, DNS hiccup, timeout: worth another try.
      throw new TransientHttpError(`fetching ${this.name}: ${(error as Error).message}`);
    }
    if (response.status !== 206) {
      await response.body?.cancel();
      const message = `fetching bytes ${offset}-${last} of ${this.name}: HTTP ${response.status}`;
      if (response.status >= 500 || response.status === 429 || response.status === 408) throw new TransientHttpError(message);
      throw new Error(response.status === 200 ? `${message} (the server ignored the Range request)` : message);
    }
    const contentRange = response.headers.get('content-range');
    const match = contentRange ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange) : null;
    if (!match || Number(match[1]) !== offset || Number(match[2]) !== last || (match[3] !== '*' && Number(match[3]) !== this.size)) {
      await response.body?.cancel();
      throw new Error(
        `fetching bytes ${offset}-${last} of ${this.name}: server answered Content-Range "${contentRange}" ` +
          `(expected bytes ${offset}-${last}/${this.size}; has the object changed size?)`,
      );
    }
    let body: Buffer;
    try {
      body = Buffer.from(await response.arrayBuffer());
    } catch (error) {
      throw new TransientHttpError(`reading ${this.name}: ${(error as Error).message}`);
    }
    if (body.length !== length) throw new TransientHttpError(`short read from ${this.name}: ${body.length} of ${length} bytes`);
    return body;
  }
}

class TransientHttpError extends Error {
  override name = 'TransientHttpError';
}
