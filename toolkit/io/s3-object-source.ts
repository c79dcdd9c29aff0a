import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { checkRange } from './file-source';
import { isFirstByteOnly } from './range-quirks';
import { withRetries } from './retry';
import { formatS3Url } from './s3-url';
import type { RandomAccessSource } from './source';

/**
 * An S3 object read by ranged GETs. Every read is pinned to the ETag seen when the source was
 * opened, so an object replaced mid-conversion fails the read instead of mixing two versions.
 */
export class S3ObjectSource implements RandomAccessSource {
  private constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    readonly size: number,
    private readonly etag: string | undefined,
    readonly name: string,
  ) {}

  static async open(s3: S3Client, bucket: string, key: string): Promise<S3ObjectSource> {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    if (head.ContentLength === undefined) throw new Error(`S3 did not report the size of s3://${bucket}/${key}`);
    return new S3ObjectSource(s3, bucket, key, head.ContentLength, head.ETag, formatS3Url({ bucket, key }));
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.fetch(offset, length);
  }

  async readInto(offset: number, target: Buffer): Promise<void> {
    checkRange(this, offset, target.length);
    // The two-byte workaround below needs a buffer of its own.
    if (target.length <= 1) (await this.fetch(offset, target.length)).copy(target);
    else await this.fetch(offset, target.length, target);
  }

  /** Reads the range into `into` when given (exactly `length` bytes), else into a new buffer. */
  private async fetch(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    checkRange(this, offset, length);
    if (length === 0) return Buffer.alloc(0);
    if (isFirstByteOnly(offset, length, this.size)) return (await this.fetch(0, 2)).subarray(0, 1);
    // The SDK retries failed requests, but not a body that breaks off while streaming.
    return withRetries(
      async () => {
        const response = await this.s3.send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: this.key,
            Range: `bytes=${offset}-${offset + length - 1}`,
            IfMatch: this.etag,
          }),
        );
        if (!response.Body) throw new Error(`empty response reading ${this.name}`);
        const target = into ?? Buffer.allocUnsafe(length);
        const received = await collectInto(response.Body as AsyncIterable<Uint8Array>, target);
        if (received !== length) {
          throw new ShortReadError(`read of ${length} bytes at ${offset} from ${this.name} returned ${received} bytes`);
        }
        return target;
      },
      { attempts: 4, baseDelayMs: 200, isTransient: isBrokenBody },
    );
  }

  async close(): Promise<void> {
    // The S3 client belongs to the caller.
  }
}

/**
 * Copies a response body straight into `target` as it arrives: the SDK's transformToByteArray
 * would gather the chunks and then copy them all once more into a buffer of its own.
 * Returns the number of bytes the body held (more than target.length is counted, not stored).
 */
async function collectInto(body: AsyncIterable<Uint8Array>, target: Buffer): Promise<number> {
  let received = 0;
  for await (const chunk of body) {
    if (received + chunk.length <= target.length) target.set(chunk, received);
    received += chunk.length;
  }
  return received;
}

class ShortReadError extends Error {
  override name = 'ShortReadError';
}

function isBrokenBody(error: unknown): boolean {
  if (error instanceof ShortReadError) return true;
  const code = (error as { code?: string })?.code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT' || code === 'ERR_STREAM_PREMATURE_CLOSE';
}
