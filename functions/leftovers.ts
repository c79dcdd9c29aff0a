/**
 * What a task leaves in the image store besides its committed output: multipart uploads a
 * killed or superseded attempt never completed or aborted, and the objects it wrote (partial
 * outputs, the sink's `*.zero-part-*` helpers). A new attempt clears its predecessors'; a
 * cancelled or failed task clears its whole prefix.
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

/**
 * Aborts the multipart uploads and deletes the objects under `prefix` whose key does not start
 * with `keep` (when given). Returns what it removed.
 */
export async function clearPrefix(s3: S3Client, bucket: string, prefix: string, keep?: string): Promise<Cleared> {
  const cleared: Cleared = { abortedUploads: 0, deletedObjects: 0 };
  const spare = (key: string | undefined) => !key || (keep !== undefined && key.startsWith(keep));
  try {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
      for (const upload of page.Uploads ?? []) {
        if (spare(upload.Key) || !upload.UploadId) continue;
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
      const doomed = (page.Contents ?? []).map((o) => o.Key).filter((key): key is string => !spare(key));
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
