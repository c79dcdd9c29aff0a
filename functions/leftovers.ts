/**
 * What a task leaves in the image store besides its committed output: multipart uploads a
 * killed or superseded attempt never completed or aborted, and the objects it wrote (partial
 * outputs, the sink's `*.zero-part-*` helpers). A new attempt clears its predecessors'; a
 * cancelled task clears its whole prefix, a failed one all but its converted image (kept for a
 * retry from a later stage).
 */
import { AbortMultipartUploadCommand, DeleteObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { TaskDocument } from '../tasks/task';
import type { StageContext } from './stage';

/** Servers that do not list multipart uploads (s3rver) answer NotImplemented: nothing to abort we could know of. */
function notImplemented(err: unknown): boolean {
  const e = err as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NotImplemented' || e?.Code === 'NotImplemented' || e?.$metadata?.httpStatusCode === 501;
}

function missingBucket(err: unknown): boolean {
  return (err as { name?: string })?.name === 'NoSuchBucket';
}

export interface Cleared {
  abortedUploads: number;
  deletedObjects: number;
}

/** Says whether to leave an upload or object alone, by its key and when it was started or last written. */
export type Spare = (key: string, since: Date | undefined) => boolean;

/**
 * Aborts the multipart uploads and deletes the objects under `prefix` that `keep` does not
 * spare (all of them without it). Returns what it removed.
 */
export async function clearPrefix(s3: S3Client, bucket: string, prefix: string, keep?: Spare): Promise<Cleared> {
  const cleared: Cleared = { abortedUploads: 0, deletedObjects: 0 };
  const spare = (key: string | undefined, since: Date | undefined) => !key || (keep !== undefined && keep(key, since));
  try {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
      for (const upload of page.Uploads ?? []) {
        if (spare(upload.Key, upload.Initiated) || !upload.UploadId) continue;
        await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }));
        cleared.abortedUploads++;
      }
      if (!page.IsTruncated) break;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  } catch (err) {
    if (!notImplemented(err) && !missingBucket(err)) throw err;
  }
  try {
    let token: string | undefined;
    for (;;) {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
      const doomed = (page.Contents ?? []).filter((o) => !spare(o.Key, o.LastModified)).map((o) => o.Key as string);
      // One by one: DeleteObjects wants a checksum not every S3 implementation checks alike.
      for (const Key of doomed) {
        await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
        cleared.deletedObjects++;
      }
      if (!page.IsTruncated) break;
      token = page.NextContinuationToken;
    }
  } catch (err) {
    if (!missingBucket(err)) throw err;
  }
  return cleared;
}

/** Key prefix under which a task's outputs live in the image store. */
export function imagePrefix(taskId: string): string {
  return `images/${taskId}/`;
}

/**
 * Removes what an ended task left in the image store: under its prefix every object and
 * multipart upload of every attempt, and its converted output unless `keepImage` (a failed
 * task keeps it, so that `imaging tasks retry` can go on from a later stage). Best effort:
 * logged, never thrown.
 */
export async function clearTaskOutputs(ctx: Pick<StageContext, 's3' | 'config' | 'log'>, done: TaskDocument, keepImage = false): Promise<void> {
  const image = done.artifacts.image;
  try {
    if (image && !keepImage) await ctx.s3.send(new DeleteObjectCommand({ Bucket: image.bucket, Key: image.key }));
    const kept = keepImage && image?.bucket === ctx.config.imageBucket ? image.key : undefined;
    await clearPrefix(ctx.s3, ctx.config.imageBucket, imagePrefix(done.id), kept === undefined ? undefined : (key) => key === kept);
  } catch (err) {
    ctx.log.warn({ taskId: done.id, err: String(err) }, 'could not remove the outputs of an ended task');
  }
}

