/**
 * The decrypt stage's work for a bundle: unwrap the AES key and IV with the cloud's private key,
 * fetch the parts in order (with the owner's key, bounded read-ahead, each part's size bounded
 * before it is read), check each part's SHA-1, decrypt, gunzip and untar, and stream the image
 * into the image store as one raw object (S3 multipart: no scratch disk, memory bounded by the
 * parts in flight and the upload's queue). The tar stream's SHA-1 and the unbundled size are
 * checked at the end; on any refusal the upload is aborted, so nothing is left in the store.
 * The first sectors seen on the way decide the layout: a partition table makes a whole "disk",
 * anything else a bare filesystem, "partition".
 */
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Readable } from 'stream';
import type { ImageLayout, StoredObject, TaskDocument } from '../../tasks/task';
import { unwrapBundleKey } from '../../toolkit/bundle/bundle-keys';
import { unbundle } from '../../toolkit/bundle/unbundle';
import { HashingSink } from '../../toolkit/io/hashing-sink';
import { ensureBucket, isMissingObject, s3StatusOf } from '../../toolkit/io/object-storage';
import { S3MultipartSink } from '../../toolkit/io/s3-multipart-sink';
import { detectPartitionTable, PARTITION_HEAD_BYTES } from '../../toolkit/inspect/partitions';
import { rowOf } from '../../pipeline/table';
import { ClientError } from '../errors';
import { TaskProgress } from '../progress';
import type { StageContext } from '../stage';
import { attemptPrefix, clearPredecessors } from '../task-step';
import { withAccountS3 } from './account-objects';

const MiB = 1024 ** 2;
/** Parts fetched ahead of the one being decrypted. */
const READ_AHEAD = 2;

export interface UnbundledImage {
  image: StoredObject;
  layout?: ImageLayout;
}

/** The largest part accepted: the parts in flight stay a fixed share (a quarter) of the memory bound. */
function maxPartBytes(ctx: StageContext): number {
  return Math.max(16 * MiB, Math.floor(ctx.config.memoryLimitBytes / 4 / (READ_AHEAD + 1)));
}

/**
 * One part, whole, in one buffer: a single GET whose Content-Length is bounded before any of the
 * body is read (no HEAD first), and whose body is copied once, chunk by chunk, into a buffer of
 * that size (not gathered into an array and copied again).
 */
async function readPart(s3: S3Client, bucket: string, key: string, index: number, maxBytes: number): Promise<Buffer> {
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const body = res.Body as Readable | undefined;
    const size = Number(res.ContentLength ?? NaN);
    if (!Number.isSafeInteger(size) || size < 0 || size > maxBytes) {
      body?.destroy();
      if (!Number.isSafeInteger(size) || size < 0) throw new Error(`bundle part ${index} (${key}) came without a Content-Length`); // transient: retried
      throw new ClientError(`bundle part ${index} (${key}) is ${size} bytes; parts of at most ${maxBytes} bytes are accepted (bundle with smaller parts)`);
    }
    // size 0: the empty last part of a ciphertext that fills its parts exactly.
    const bytes = Buffer.allocUnsafe(size);
    let filled = 0;
    if (body) {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (filled + chunk.length > size) {
          body.destroy();
          throw new Error(`bundle part ${index} (${key}) changed while it was read`); // transient: retried
        }
        chunk.copy(bytes, filled);
        filled += chunk.length;
      }
    }
    if (filled !== size) throw new Error(`bundle part ${index} (${key}) changed while it was read`); // transient: retried
    return bytes;
  } catch (err) {
    if (err instanceof ClientError) throw err;
    if (isMissingObject(err) || s3StatusOf(err) === 403) {
      throw new ClientError(`bundle part ${index} (s3://${bucket}/${key}) is missing or cannot be read with your account's credentials; upload the whole bundle before registering it`);
    }
    throw err;
  }
}

export async function unbundleToStore(ctx: StageContext, task: TaskDocument): Promise<UnbundledImage> {
  const bundle = task.request.bundle;
  const verified = task.artifacts.bundle;
  if (!bundle || !verified) throw new Error(`task ${task.id} reached decrypt without a verified bundle manifest`);
  if (!ctx.config.cloudPrivateKey) throw new ClientError('this service has no cloud key configured (IMAGING_CLOUD_KEY_FILE), so it cannot decrypt bundles');
  const cipher = unwrapBundleKey(verified, ctx.config.cloudPrivateKey);
  // What unbundle() checks against: the verified manifest's fields (a part's filename is its key).
  const manifest = {
    size: verified.size,
    tarSha1: verified.tarSha1,
    parts: verified.parts.map((p) => ({ index: p.index, filename: p.key, sha1: p.sha1 })),
  };

  const bucket = ctx.config.imageBucket;
  // Each attempt writes under its own key, after clearing what earlier attempts left.
  const key = `${attemptPrefix(task.id, ctx.attempt)}disk.raw`;
  await ensureBucket(ctx.s3, bucket);
  await clearPredecessors(ctx, task.id);
  const partSize = Math.max(5 * MiB, Math.min(16 * MiB, Math.floor(ctx.config.memoryLimitBytes / 32)));
  const sink = new HashingSink(new S3MultipartSink(ctx.s3, bucket, key, { partSize, queueSize: 4, expectedSize: verified.size }));
  const head: Buffer[] = [];
  let headBytes = 0;
  const keepHead = (chunk: Buffer) => {
    if (headBytes >= PARTITION_HEAD_BYTES) return;
    const take = chunk.subarray(0, PARTITION_HEAD_BYTES - headBytes);
    head.push(Buffer.from(take));
    headBytes += take.length;
  };
  const progress = new TaskProgress(ctx, task.id, rowOf('decrypt').progress);
  const maxBytes = maxPartBytes(ctx);
  let written;
  try {
    written = await withAccountS3(ctx, task.accountId, 'the bundle parts', (s3) =>
      unbundle({
        manifest,
        cipher,
        readPart: (part) => readPart(s3, bundle.bucket, part.filename, part.index, maxBytes),
        readAhead: READ_AHEAD,
        output: {
          write: async (chunk) => {
            keepHead(chunk);
            await sink.write(chunk);
          },
          writeZeros: async (length) => {
            if (headBytes < PARTITION_HEAD_BYTES) keepHead(Buffer.alloc(Math.min(length, PARTITION_HEAD_BYTES - headBytes)));
            await sink.writeZeros(length);
          },
        },
        onProgress: (done, total) => progress.report(done, total),
        // Stop on a cancellation, and when the lease is lost to a newer attempt.
        signal: ctx.signal ? AbortSignal.any([progress.abort.signal, ctx.signal]) : progress.abort.signal,
      }));
    await sink.finish();
  } catch (err) {
    await sink.abort().catch(() => undefined);
    throw err;
  }
  ctx.recordTransfer?.({ bytesWritten: written.size });
  await progress.flush(written.size, written.size);
  const image = { bucket, key, size: written.size, sha256: sink.digestHex() };
  // Kernels and ramdisks are not disks; a machine image is a whole disk or a bare filesystem.
  const layout: ImageLayout | undefined = verified.imageType === 'machine' ? (detectPartitionTable(Buffer.concat(head)).type === 'none' ? 'partition' : 'disk') : undefined;
  return { image, ...(layout ? { layout } : {}) };
}
