/**
 * What a task leaves in the image store besides its committed output: multipart uploads a
 * killed or superseded attempt never completed or aborted, and the objects it wrote (partial
 * outputs, the sink's `*.zero-part-*` helpers). A new attempt clears its predecessors'; a
 * cancelled task clears its whole prefix, a failed one all but its converted image (kept for a
 * retry from a later stage).
 */
import { AbortMultipartUploadCommand, DeleteObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';

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
