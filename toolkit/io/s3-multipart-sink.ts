import { AbortMultipartUploadCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { PassThrough } from 'stream';
import { formatS3Url } from './s3-url';
import type { ByteSink } from './sink';
import { zeroSlices } from './zeros';

export interface S3MultipartSinkOptions {
  /** Bytes per part (≥ 5 MiB). Default 16 MiB. */
  partSize?: number;
  /** Parts uploading at once. Default 4. Memory held ≈ partSize × (queueSize + 1). */
  queueSize?: number;
  /**
   * Expected total size, when known: raises the part size so the upload fits S3's 10,000-part limit.
   */
  expectedSize?: number;
  contentType?: string;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;

/**
 * Bytes streamed into one S3 object by a multipart upload. lib-storage cuts the stream into parts
 * and uploads up to `queueSize` of them at once, completing in any order; write() waits while
 * that queue is full, which is what bounds memory.
 */
export class S3MultipartSink implements ByteSink {
  readonly name: string;
  private readonly body: PassThrough;
  private readonly upload: Upload;
  private readonly done: Promise<unknown>;
  private failure: Error | undefined;
  /** Writers waiting for drain; told when the upload fails, since drain would then never come. */
  private readonly waiting = new Set<(error: Error) => void>();
  private written = 0;
  private state: 'open' | 'finished' | 'aborted' = 'open';

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    options: S3MultipartSinkOptions = {},
  ) {
    this.name = formatS3Url({ bucket, key });
    const partSize = Math.max(
      options.partSize ?? 16 * 1024 * 1024,
      MIN_PART_SIZE,
      Math.ceil((options.expectedSize ?? 0) / (MAX_PARTS - 1)),
    );
    // A small stream buffer: the real buffering is lib-storage's part queue.
    this.body = new PassThrough({ highWaterMark: 1024 * 1024 });
    this.upload = new Upload({
      client: s3,
      params: { Bucket: bucket, Key: key, Body: this.body, ContentType: options.contentType ?? 'application/octet-stream' },
      partSize,
      queueSize: options.queueSize ?? 4,
      leavePartsOnError: false,
    });
    this.done = this.upload.done();
    this.done.catch((error: Error) => {
      this.failure = error;
      for (const fail of this.waiting) fail(error);
    });
  }

  async write(chunk: Buffer): Promise<void> {
    this.assertOpen();
    if (chunk.length === 0) return;
    this.written += chunk.length;
    if (!this.body.write(chunk)) await this.drained();
  }

  async writeZeros(length: number): Promise<void> {
    for (const zeros of zeroSlices(length)) await this.write(zeros);
  }

  async finish(): Promise<{ size: number }> {
    this.assertOpen();
    this.state = 'finished';
    this.body.end();
    await this.done;
    return { size: this.written };
  }

  async abort(): Promise<void> {
    if (this.state === 'aborted') return;
    this.state = 'aborted';
    await this.upload.abort();
    this.body.destroy();
    await this.done.catch(() => undefined);
    // lib-storage aborts the multipart upload in the background; do it here too so that when
    // abort() returns no parts are left behind (a second abort of the same upload is harmless).
    const uploadId = (this.upload as unknown as { uploadId?: string }).uploadId;
    if (uploadId) {
      await this.s3
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: uploadId }))
        .catch(() => undefined);
    }
  }

  private drained(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onDrain = (): void => {
        this.waiting.delete(onFailure);
        resolve();
      };
      const onFailure = (error: Error): void => {
        this.body.off('drain', onDrain);
        reject(error);
      };
      if (this.failure) return reject(this.failure);
      this.waiting.add(onFailure);
      this.body.once('drain', onDrain);
    });
  }

  private assertOpen(): void {
    if (this.failure) throw this.failure;
    if (this.state !== 'open') throw new Error(`${this.name} is already ${this.state}`);
  }
}
