import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { withPayloadSigning } from './s3-payload-signing';
import { ZeroPartCopier } from './s3-zero-part-copier';
import { formatS3Url } from './s3-url';
import { checkHeadHold, checkHeadPatch, type ByteSink } from './sink';

export interface S3MultipartSinkOptions {
  /** Bytes per part (≥ 5 MiB). Default 16 MiB. */
  partSize?: number;
  /**
   * Parts uploading at once. Default 4. Memory held ≈ partSize × (queueSize + 1), plus a held
   * head (see holdHead) of max(partSize, head length) until finish().
   */
  queueSize?: number;
  /**
   * Expected total size, when known: raises the part size so the upload fits S3's 10,000-part
   * limit, and lets parts end early at long zero runs while that limit allows (see the class comment).
   */
  expectedSize?: number;
  contentType?: string;
  /**
   * Sign each part's bytes (SigV4 over the SHA-256 of the body). Default false: parts are sent as
   * UNSIGNED-PAYLOAD, as S3 allows. The SDK hashes a Buffer body on the main thread, which
   * measured a fifth of all CPU time of an S3 → S3 conversion; TLS protects the bytes in transit,
   * and the convert stage hashes its output anyway. Turn it on for a plain-HTTP endpoint that
   * must not accept unsigned bodies.
   */
  signPayload?: boolean;
  /**
   * Send a part made only of zero runs (writeZeros) as UploadPartCopy from a zero object put next
   * to the output (see the class comment), so none of its zero bytes is filled in or uploaded.
   * Default true. A server that cannot copy (s3rver answers NotImplemented, a policy may deny
   * it) is asked once: the sink then uploads zero parts as bytes, as it does when this is false.
   */
  copyZeroParts?: boolean;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;
/** S3's limit on one part; a held head becomes part 1, so it may not be longer. */
const MAX_PART_SIZE = 5 * 1024 ** 3;

/**
 * Bytes streamed into one S3 object by a multipart upload: up to `queueSize` parts upload at
 * once and complete in any order; write() waits while that queue is full, which is what bounds
 * memory.
 *
 * Parts are assembled in part-sized buffers that are reused once their upload is done, so the
 * sink holds exactly (queueSize + 1) parts and allocates nothing per part; bytes are copied once,
 * into the part, and write() is done with its chunk when it resolves. (lib-storage, used before,
 * concatenated every part out of the stream's chunks and kept the chunks alive until then.)
 * An object smaller than one part is sent with one PutObject.
 *
 * holdHead(length) makes part 1 a buffer of its own, max(partSize, length) bytes: once full it
 * is not uploaded but kept in memory, where patchHead() overwrites it, and finish() uploads it
 * last, before CompleteMultipartUpload (S3 assembles parts by number, whatever their upload
 * order). That memory comes on top of the queue's, for the whole upload. Part 1 may be larger
 * than the others; S3 only requires every part but the last to be at least 5 MiB.
 *
 * Zero parts (ZeroPartCopier, s3-zero-part-copier.ts): a disk image converted to raw is often mostly zeros, which a file leaves as holes
 * but an upload would carry byte by byte. A part made only of writeZeros runs is therefore not
 * filled in at all, and is sent as UploadPartCopy of a range of a zero object, which S3 builds
 * server-side. That zero object is `${key}.zero-part-<random hex>` in the same bucket: partSize
 * zero bytes, put by the first whole zero part (a short last part alone is not worth putting it
 * for). It exists, next to the output, for the rest of the upload, and is deleted once the
 * upload is completed or aborted (or its completion fails). The first copy is a probe the other
 * zero parts wait for: if the put or that copy fails (a server without UploadPartCopy, a denied
 * copy), zero parts are uploaded as bytes from then on; copying being unavailable never fails
 * the upload. A held head (part 1) is never copied, and an object small enough for one
 * PutObject is sent as before.
 *
 * Parts follow the zero runs, so that few zeros travel as bytes: S3 parts need not be of one
 * size, only at least 5 MiB (but the last). A part holding bytes that meets a zero run longer
 * than 5 MiB (a whole part while no zero object exists yet) ends there, padded with zeros to
 * 5 MiB if shorter; a part of zeros that meets bytes after 5 MiB or more is sent by copy as it
 * is. Only with expectedSize known, and only while the parts still needed at partSize each fit
 * in S3's 10,000.
 */
export class S3MultipartSink implements ByteSink {
  readonly name: string;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly contentType: string;
  private readonly signPayload: boolean;
  /** options.expectedSize: parts are cut at zero runs only when it is known (see mayCutPart). */
  private readonly expectedSize: number | undefined;
  /** Sends parts made only of zeros by UploadPartCopy while the server allows it. */
  private readonly zeros: ZeroPartCopier;
  private current: Buffer | undefined;
  /**
   * The current part holds only zeros so far (`filled` of them, from writeZeros), none of them in
   * its buffer: it is sent by copy, or its buffer is zero-filled before bytes land in it.
   */
  private zerosNotInBuffer = false;
  /** Part 1 while the head is held (see holdHead); uploaded by finish(). */
  private held: Buffer | undefined;
  /** The patchable bytes at its start: what holdHead() was asked for. */
  private heldLength = 0;
  private filled = 0;
  private readonly spare: Buffer[] = [];
  private uploadId: Promise<string> | undefined;
  private readonly parts: CompletedPart[] = [];
  private readonly uploading = new Set<Promise<void>>();
  private nextPartNumber = 1;
  private failure: Error | undefined;
  private written = 0;
  private state: 'open' | 'finished' | 'aborted' = 'open';
  /** Cuts requests still running when the upload is aborted. */
  private readonly requests = new AbortController();

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    options: S3MultipartSinkOptions = {},
  ) {
    this.name = formatS3Url({ bucket, key });
    this.partSize = Math.max(options.partSize ?? 16 * 1024 * 1024, MIN_PART_SIZE, Math.ceil((options.expectedSize ?? 0) / (MAX_PARTS - 1)));
    this.queueSize = Math.max(1, options.queueSize ?? 4);
    this.contentType = options.contentType ?? 'application/octet-stream';
    this.signPayload = options.signPayload ?? false;
    this.expectedSize = options.expectedSize;
    this.zeros = new ZeroPartCopier(s3, bucket, key, {
      enabled: options.copyZeroParts ?? true,
      partSize: this.partSize,
      signPayload: this.signPayload,
      signal: this.requests.signal,
      uploadBytes: (uploadId, partNumber, body) => this.uploadBytes(uploadId, partNumber, body),
    });
  }

  async write(chunk: Buffer): Promise<void> {
    this.assertOpen();
    const start = this.written;
    this.written += chunk.length;
    for (let at = 0; at < chunk.length; ) {
      if (this.zerosNotInBuffer) {
        // Bytes after a zero run long enough to be a part of its own: the run goes by copy, the bytes start the next part.
        if (this.filled >= MIN_PART_SIZE && this.zeros.hasZeroObject && this.zeros.enabled && this.mayCutPart(start + at)) await this.sendPart();
        else this.fillSkippedZeros();
      }
      const part = this.currentPart();
      const n = Math.min(part.length - this.filled, chunk.length - at);
      chunk.copy(part, this.filled, at, at + n);
      this.filled += n;
      at += n;
      if (this.filled === part.length) await this.sendPart();
    }
  }

  async writeZeros(length: number): Promise<void> {
    this.assertOpen();
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`invalid zero run length ${length}`);
    const end = this.written + length;
    this.written = end;
    for (let left = length; left > 0; ) {
      const part = this.currentPart();
      const pad = this.zeroRunCut(part, left, end - left);
      if (pad !== undefined) {
        // Bytes before a long zero run: end their part (padded to S3's minimum) so the run goes by copy.
        part.fill(0, this.filled, this.filled + pad);
        this.filled += pad;
        left -= pad;
        await this.sendPart();
        continue;
      }
      const n = Math.min(part.length - this.filled, left);
      // A part that starts with zeros may be copied whole: leave its buffer alone until bytes land in it.
      if (this.filled === 0 && this.zeros.enabled && part !== this.held) this.zerosNotInBuffer = true;
      if (!this.zerosNotInBuffer) part.fill(0, this.filled, this.filled + n);
      this.filled += n;
      left -= n;
      if (this.filled === part.length) await this.sendPart();
    }
  }

  holdHead(length: number): void {
    this.assertOpen();
    checkHeadHold(this.name, length, this.written, this.held !== undefined);
    if (length > MAX_PART_SIZE) throw new RangeError(`${this.name}: a held head of ${length} bytes is larger than S3's largest part (5 GiB)`);
    this.held = Buffer.allocUnsafe(Math.max(this.partSize, length));
    this.heldLength = length;
  }

  /** Patches part 1 in memory: nothing of the held head has been sent yet. */
  async patchHead(offset: number, chunk: Buffer): Promise<void> {
    this.assertOpen();
    checkHeadPatch(this.name, offset, chunk.length, this.heldLength, this.written);
    this.held?.set(chunk, offset);
  }

  async finish(): Promise<{ size: number }> {
    this.assertOpen();
    this.state = 'finished';
    if (this.held ? this.written <= this.held.length : !this.uploadId) {
      // Everything fits in one part: a plain PutObject (an empty object included).
      if (this.zerosNotInBuffer) this.fillSkippedZeros();
      const body = (this.held ?? this.current)?.subarray(0, this.written) ?? Buffer.alloc(0);
      await this.s3.send(withPayloadSigning(new PutObjectCommand({ Bucket: this.bucket, Key: this.key, Body: body, ContentType: this.contentType }), this.signPayload));
      return { size: this.written };
    }
    try {
      if (this.filled > 0) await this.sendPart();
      const held = this.held;
      if (held) await this.startPart(1, (uploadId) => this.uploadBytes(uploadId, 1, held));
      await Promise.all(this.uploading);
      if (this.failure) throw this.failure;
      const parts = [...this.parts].sort((a, b) => a.PartNumber! - b.PartNumber!);
      await this.s3.send(
        new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: await this.uploadId, MultipartUpload: { Parts: parts } }),
      );
      return { size: this.written };
    } finally {
      // No copy may still be reading the zero object when it goes.
      await Promise.all(this.uploading);
      await this.zeros.deleteZeroObject();
    }
  }

  /** Idempotent; a second caller waits for the first abort to end (the upload is gone when it resolves). */
  abort(): Promise<void> {
    this.aborting ??= this.abortUpload();
    return this.aborting;
  }

  private aborting: Promise<void> | undefined;

  private async abortUpload(): Promise<void> {
    this.state = 'aborted';
    this.current = undefined;
    this.held = undefined;
    // Parts still uploading are cut off (and awaited), or they could land after the abort and leave storage behind.
    this.requests.abort();
    await Promise.all(this.uploading);
    const uploadId = await this.uploadId?.catch(() => undefined);
    if (uploadId) {
      await this.s3.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: uploadId })).catch(() => undefined);
    }
    await this.zeros.deleteZeroObject();
  }

  /** The part being filled: the held head's buffer for part 1, else a reused part-sized buffer. */
  private currentPart(): Buffer {
    this.current ??= (this.nextPartNumber === 1 ? this.held : undefined) ?? this.spare.pop() ?? Buffer.allocUnsafe(this.partSize);
    return this.current;
  }

  /**
   * When a zero run of `left` bytes (from `position`) meets a part holding bytes: the zeros to
   * pad that part with before ending it there, so that the rest of the run starts a part of its
   * own and goes by copy; undefined to keep filling the part. Only when the rest is a part's
   * worth at least (S3's 5 MiB minimum; a whole part if no zero object exists yet, as putting it
   * for less would cost more than it saves) and the part count allows.
   */
  private zeroRunCut(part: Buffer, left: number, position: number): number | undefined {
    if (this.filled === 0 || this.zerosNotInBuffer || part === this.held || !this.zeros.enabled) return undefined;
    const pad = Math.max(0, MIN_PART_SIZE - this.filled);
    const rest = left - pad;
    if (rest < (this.zeros.hasZeroObject ? MIN_PART_SIZE : this.partSize)) return undefined;
    return this.mayCutPart(position) ? pad : undefined;
  }

  /**
   * Whether a part may end early at `position` (parts cut at zero runs are shorter than partSize,
   * so they are more): only with the expected size known, while the parts it still needs at
   * partSize each, plus this one, stay within S3's 10,000.
   */
  private mayCutPart(position: number): boolean {
    if (this.expectedSize === undefined) return false;
    const partsStillNeeded = Math.ceil(Math.max(0, this.expectedSize - position) / this.partSize) + 2;
    return this.nextPartNumber + partsStillNeeded <= MAX_PARTS;
  }

  /** Zero-fills the bytes of the current part that writeZeros skipped, before other bytes land in it. */
  private fillSkippedZeros(): void {
    this.current!.fill(0, 0, this.filled);
    this.zerosNotInBuffer = false;
  }

  /** Sends the current part: its bytes, or a copy of zeros if it is only skipped zeros (a held head stays behind for finish() to upload). */
  private async sendPart(): Promise<void> {
    const buffer = this.current!;
    const length = this.filled;
    const zerosOnly = this.zerosNotInBuffer;
    this.current = undefined;
    this.filled = 0;
    this.zerosNotInBuffer = false;
    const partNumber = this.nextPartNumber++;
    if (buffer === this.held) return;
    const send = zerosOnly
      ? (uploadId: string) => this.zeros.send(uploadId, partNumber, buffer, length)
      : (uploadId: string) => this.uploadBytes(uploadId, partNumber, buffer.subarray(0, length));
    await this.startPart(partNumber, send, () => this.spare.push(buffer));
  }

  /**
   * Starts sending one part after waiting for a free upload slot: `send` uploads or copies it and
   * returns its ETag; `sent` runs once S3 has it.
   */
  private async startPart(partNumber: number, send: (uploadId: string) => Promise<string | undefined>, sent?: () => void): Promise<void> {
    if (partNumber > MAX_PARTS) throw (this.failure ??= new Error(`${this.name}: more than ${MAX_PARTS} parts of ${this.partSize} bytes`));
    while (this.uploading.size >= this.queueSize) await Promise.race(this.uploading);
    if (this.failure) throw this.failure;
    this.uploadId ??= this.s3
      .send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, ContentType: this.contentType }), { abortSignal: this.requests.signal })
      .then((response) => {
        if (!response.UploadId) throw new Error(`${this.name}: S3 returned no upload id`);
        return response.UploadId;
      });
    let uploadId: string;
    try {
      uploadId = await this.uploadId;
    } catch (error) {
      throw (this.failure ??= error as Error);
    }
    const upload: Promise<void> = send(uploadId)
      .then((etag) => {
        this.parts.push({ PartNumber: partNumber, ETag: etag });
        sent?.();
      })
      .catch((error: Error) => {
        this.failure ??= error;
      })
      .finally(() => this.uploading.delete(upload));
    this.uploading.add(upload);
  }

  private async uploadBytes(uploadId: string, partNumber: number, body: Buffer): Promise<string | undefined> {
    const response = await this.s3.send(
      withPayloadSigning(new UploadPartCommand({ Bucket: this.bucket, Key: this.key, UploadId: uploadId, PartNumber: partNumber, Body: body }), this.signPayload),
      { abortSignal: this.requests.signal },
    );
    return response.ETag;
  }

  private assertOpen(): void {
    if (this.failure) throw this.failure;
    if (this.state !== 'open') throw new Error(`${this.name} is already ${this.state}`);
  }
}
