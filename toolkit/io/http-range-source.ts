import { checkRange } from './file-source';
import { RangeGetClient, type RangeResponseInfo } from './range-get-client';
import { trustedCa } from './trusted-ca';
import { isFirstByteOnly } from './range-quirks';
import { withRetries } from './retry';
import type { RandomAccessSource } from './source';

export interface HttpRangeSourceOptions {
  attempts?: number;
  baseDelayMs?: number;
  /** Sent with every request and not signed: a presigned URL signs only `host` (e.g. If-Match). */
  headers?: Record<string, string>;
  /** The ETag every response must carry: an object replaced mid-read fails instead of mixing versions. */
  expectedEtag?: string;
  /** The client whose sockets carry the reads (default: one shared by every source in the process). */
  client?: RangeGetClient;
}

let sharedClient: RangeGetClient | undefined;

/** The process's range client: sockets kept alive across sources and conversions. */
export function sharedRangeGetClient(): RangeGetClient {
  // Created at first use: a CA bundle the process trusts (set at start) applies to its sockets.
  sharedClient ??= new RangeGetClient({ ca: trustedCa() });
  return sharedClient;
}

/**
 * A byte range source over plain HTTP(S) — typically a presigned S3 GET URL from an import
 * manifest, or one S3ObjectSource made for its object. The server must honour Range requests;
 * a server that answers 200 with the whole body, or a range other than the one asked for, is
 * refused rather than trusted.
 *
 * Bytes arrive through RangeGetClient, which copies a body once, from its socket straight into
 * the caller's memory: readInto lets the converter's slabs be that memory.
 */
export class HttpRangeSource implements RandomAccessSource {
  private url: URL;

  constructor(
    url: string,
    readonly size: number,
    readonly name: string,
    private readonly options: HttpRangeSourceOptions = {},
  ) {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid size ${size} for ${name}`);
    this.url = new URL(url);
  }

  /** Points later reads at a new URL for the same object (a fresh presigned URL). */
  replaceUrl(url: string): void {
    this.url = new URL(url);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, offset, length);
    if (length === 0) return Buffer.alloc(0);
    if (isFirstByteOnly(offset, length, this.size)) return (await this.read(0, 2)).subarray(0, 1);
    const target = Buffer.allocUnsafe(length);
    await this.fetchInto(offset, target);
    return target;
  }

  async readInto(offset: number, target: Buffer): Promise<void> {
    checkRange(this, offset, target.length);
    if (target.length === 0) return;
    // Some servers answer a one-byte range at 0 with the whole object; ask for two.
    if (isFirstByteOnly(offset, target.length, this.size)) (await this.read(0, 2)).copy(target, 0, 0, 1);
    else await this.fetchInto(offset, target);
  }

  async close(): Promise<void> {
    // The client's sockets are shared; idle ones do not keep the process alive.
  }

  private fetchInto(offset: number, target: Buffer): Promise<void> {
    const last = offset + target.length - 1;
    const client = this.options.client ?? sharedRangeGetClient();
    return withRetries(
      async () => {
        let info: RangeResponseInfo;
        try {
          info = await client.getRangeInto(this.url, offset, target, this.options.headers);
        } catch (error) {
          throw withContext(error, `fetching bytes ${offset}-${last} of ${this.name}`);
        }
        if (info.totalSize !== undefined && info.totalSize !== this.size) {
          throw new Error(
            `fetching bytes ${offset}-${last} of ${this.name}: server answered Content-Range "bytes ${offset}-${last}/${info.totalSize}" ` +
              `(expected bytes ${offset}-${last}/${this.size}; has the object changed size?)`,
          );
        }
        const expected = this.options.expectedEtag;
        if (expected !== undefined && info.etag !== undefined && info.etag !== expected) {
          throw new Error(`${this.name} changed while it was being read (ETag ${info.etag}, expected ${expected})`);
        }
      },
      {
        attempts: this.options.attempts ?? 4,
        baseDelayMs: this.options.baseDelayMs ?? 250,
        isTransient: (error) => (error as { transient?: boolean }).transient === true,
      },
    );
  }
}

/** Prefixes the message with what was being read; keeps the class, `transient`, status and code. */
function withContext(error: unknown, what: string): unknown {
  if (error instanceof Error && !(error instanceof RangeError)) error.message = `${what}: ${error.message}`;
  return error;
}
