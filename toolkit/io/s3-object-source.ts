import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { HttpRangeSource } from './http-range-source';
import { HttpStatusError, type RangeGetClient } from './range-get-client';
import { formatS3Url } from './s3-url';
import type { RandomAccessSource } from './source';

/** How long each presigned GET URL is valid; a fresh one is made after half of it. */
const URL_LIFETIME_SECONDS = 3600;
/** Answers that mean the URL (or the credentials it was signed with) went stale: sign again. */
const STALE_SIGNATURE_CODES = new Set(['AccessDenied', 'ExpiredToken', 'TokenRefreshRequired', 'RequestExpired']);

export interface S3ObjectSourceOptions {
  client?: RangeGetClient;
  attempts?: number;
  baseDelayMs?: number;
}

/**
 * An S3 object read by ranged GETs. Every read is pinned to the ETag seen when the source was
 * opened (If-Match, and the answer's ETag), so an object replaced mid-conversion fails the read
 * instead of mixing two versions.
 *
 * The SDK finds the object (HEAD) and signs a GET URL for it, so endpoints, credentials and
 * addressing stay the SDK's business; the bytes then come through HttpRangeSource's range
 * client, which copies each body once, straight into the converter's memory. The SDK's own
 * GetObject allocates and copies every 64 KiB of a body twice, and that garbage was ~48 MiB of
 * the 256 MiB bound at peak.
 */
export class S3ObjectSource implements RandomAccessSource {
  /** When the GET URL in use was signed: open() has just signed the first one. */
  private signedAt = Date.now();

  private constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    private readonly etag: string | undefined,
    private readonly ranges: HttpRangeSource,
  ) {}

  get size(): number {
    return this.ranges.size;
  }

  get name(): string {
    return this.ranges.name;
  }

  static async open(s3: S3Client, bucket: string, key: string, options: S3ObjectSourceOptions = {}): Promise<S3ObjectSource> {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    if (head.ContentLength === undefined) throw new Error(`S3 did not report the size of s3://${bucket}/${key}`);
    const url = await signGet(s3, bucket, key);
    const ranges = new HttpRangeSource(url, head.ContentLength, formatS3Url({ bucket, key }), {
      ...options,
      headers: head.ETag ? { 'If-Match': head.ETag } : {},
      expectedEtag: head.ETag,
    });
    return new S3ObjectSource(s3, bucket, key, head.ETag, ranges);
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.withFreshUrl(() => this.ranges.read(offset, length));
  }

  readInto(offset: number, target: Buffer): Promise<void> {
    return this.withFreshUrl(() => this.ranges.readInto(offset, target));
  }

  async close(): Promise<void> {
    // The S3 client belongs to the caller.
  }

  /** Signs a new URL when the current one is half-way through its life, or was refused as stale. */
  private async withFreshUrl<T>(read: () => Promise<T>): Promise<T> {
    if (Date.now() - this.signedAt > (URL_LIFETIME_SECONDS * 1000) / 2) await this.resign();
    try {
      return await read();
    } catch (error) {
      if (error instanceof HttpStatusError && error.status === 412) {
        throw new Error(`${this.name} changed while it was being read (it no longer has ETag ${this.etag}); import it again`);
      }
      // Temporary credentials can expire before the URL does.
      if (error instanceof HttpStatusError && (error.status === 400 || error.status === 403) && STALE_SIGNATURE_CODES.has(error.code ?? '')) {
        await this.resign();
        return await read();
      }
      throw error;
    }
  }

  private async resign(): Promise<void> {
    this.ranges.replaceUrl(await signGet(this.s3, this.bucket, this.key));
    this.signedAt = Date.now();
  }
}

/** A GET URL signed for `host` only: Range and If-Match go out as ordinary headers. */
function signGet(s3: S3Client, bucket: string, key: string): Promise<string> {
  return getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: URL_LIFETIME_SECONDS });
}
