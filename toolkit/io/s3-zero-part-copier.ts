import { DeleteObjectCommand, PutObjectCommand, UploadPartCopyCommand, type S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'crypto';
import { withPayloadSigning } from './s3-payload-signing';
import { formatS3Url } from './s3-url';

export interface ZeroPartCopierOptions {
  /** Try copies at all (S3MultipartSinkOptions.copyZeroParts). */
  enabled: boolean;
  /** The upload's part size: the zero object's size. */
  partSize: number;
  signPayload: boolean;
  /** Aborts the requests when the upload is aborted. */
  signal: AbortSignal;
  /** Uploads a part as bytes: what a zero part becomes once copying is unavailable. */
  uploadBytes(uploadId: string, partNumber: number, body: Buffer): Promise<string | undefined>;
}

/**
 * One policy of S3MultipartSink: a part made only of zeros goes as UploadPartCopy of a range of a
 * zero object put next to the output (`${key}.zero-part-<random hex>`, partSize zero bytes, put
 * by the first whole zero part), so none of its bytes is filled in or uploaded. The first copy is
 * a probe the other zero parts wait for: if the put or that copy fails (a server without
 * UploadPartCopy, a denied copy), zero parts are uploaded as bytes from then on; copying being
 * unavailable never fails the upload. deleteZeroObject() removes the zero object at the end.
 */
export class ZeroPartCopier {
  /** Whether zero parts go by copy: `enabled`, until a copy (or the zero object's put) fails. */
  private available: boolean;
  /**
   * The object zero parts are copied from, once the first zero part has started putting it;
   * `usable` is its ETag, resolved only once a first copy from it worked.
   */
  private zeroObject: { key: string; usable: Promise<string> } | undefined;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    private readonly options: ZeroPartCopierOptions,
  ) {
    this.available = options.enabled;
  }

  /** Zero parts may go by copy (not yet known to fail). */
  get enabled(): boolean {
    return this.available;
  }

  /** The zero object exists or is being put: a zero part shorter than partSize can be copied too. */
  get hasZeroObject(): boolean {
    return this.zeroObject !== undefined;
  }

  /**
   * Sends a part of `length` zeros whose buffer was never filled: by copy while copies work, else
   * (copying unavailable: stop trying for this upload) as bytes zero-filled now. A short last part
   * does not create the zero object: putting partSize zeros to spare fewer would cost more.
   */
  async send(uploadId: string, partNumber: number, buffer: Buffer, length: number): Promise<string | undefined> {
    if (this.available && (this.zeroObject || length === this.options.partSize)) {
      try {
        return await this.copyZeroPart(uploadId, partNumber, buffer, length);
      } catch (error) {
        if (this.options.signal.aborted || (error as Error)?.name === 'AbortError') throw error;
        this.available = false;
      }
    }
    buffer.fill(0, 0, length);
    return this.options.uploadBytes(uploadId, partNumber, buffer.subarray(0, length));
  }

  /**
   * UploadPartCopy of the zero object's first `length` bytes. The first zero part puts that
   * object (its own buffer, zero-filled, is the body) and its copy is the probe: the other zero
   * parts wait for it, so a server that cannot copy is asked once.
   */
  private async copyZeroPart(uploadId: string, partNumber: number, buffer: Buffer, length: number): Promise<string> {
    this.options.signal.throwIfAborted();
    const zeroObject = this.zeroObject;
    if (zeroObject) return this.copyFromZeroObject(uploadId, partNumber, length, zeroObject.key, await zeroObject.usable);
    const key = `${this.key}.zero-part-${randomBytes(8).toString('hex')}`;
    const probe = this.putZeroObject(key, buffer).then(async (etag) => ({ etag, partETag: await this.copyFromZeroObject(uploadId, partNumber, length, key, etag) }));
    const usable = probe.then(({ etag }) => etag);
    usable.catch(() => undefined); // awaited only by later zero parts, if there are any
    this.zeroObject = { key, usable };
    return (await probe).partETag;
  }

  /** Puts partSize zero bytes (from `buffer`, zero-filled here) as the zero object; resolves to its ETag. */
  private async putZeroObject(key: string, buffer: Buffer): Promise<string> {
    buffer.fill(0);
    const response = await this.s3.send(
      withPayloadSigning(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: buffer, ContentType: 'application/octet-stream' }), this.options.signPayload),
      { abortSignal: this.options.signal },
    );
    if (!response.ETag) throw new Error(`${formatS3Url({ bucket: this.bucket, key: this.key })}: S3 returned no ETag for the zero object ${key}`);
    return response.ETag;
  }

  private async copyFromZeroObject(uploadId: string, partNumber: number, length: number, zeroKey: string, zeroETag: string): Promise<string> {
    const response = await this.s3.send(
      new UploadPartCopyCommand({
        Bucket: this.bucket,
        Key: this.key,
        UploadId: uploadId,
        PartNumber: partNumber,
        CopySource: copySourceOf(this.bucket, zeroKey),
        CopySourceRange: `bytes=0-${length - 1}`,
        CopySourceIfMatch: zeroETag,
      }),
      { abortSignal: this.options.signal },
    );
    const etag = response.CopyPartResult?.ETag;
    if (!etag) throw new Error(`${formatS3Url({ bucket: this.bucket, key: this.key })}: S3 returned no ETag for the copy of part ${partNumber}`);
    return etag;
  }

  /** Deletes the zero object if one was put (or its put was started: it may have landed); errors are ignored. */
  async deleteZeroObject(): Promise<void> {
    const zeroObject = this.zeroObject;
    if (!zeroObject) return;
    this.zeroObject = undefined;
    await zeroObject.usable.catch(() => undefined);
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: zeroObject.key })).catch(() => undefined);
  }
}

/** An x-amz-copy-source value: `bucket/key`, URL-encoded segment by segment (the slashes kept). */
function copySourceOf(bucket: string, key: string): string {
  return [bucket, ...key.split('/')].map(encodeURIComponent).join('/');
}
