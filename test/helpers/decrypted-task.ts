/**
 * A task at `bundle-decrypted`, the state the convert stage takes it in: its source uploaded to
 * `bucket` as parts (`<id>/part.N`), presigned for reading, and the task document created.
 * Shared by the suites that drive the convert stage directly.
 */
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { TaskStore } from '../../tasks/store';
import type { TaskDocument } from '../../tasks/task';

export interface DecryptedTaskOptions {
  id: string;
  content: Buffer;
  /** Bytes per uploaded part; default: one part. */
  partSize?: number;
  format?: 'RAW' | 'VMDK';
  accountId?: string;
  bucket?: string;
  /** A lease the task starts with (e.g. one a killed attempt left behind). */
  lease?: TaskDocument['lease'];
}

export async function createDecryptedTask(s3: S3Client, tasks: Pick<TaskStore, 'create'>, options: DecryptedTaskOptions): Promise<TaskDocument> {
  const { id, content, format = 'RAW', accountId = '111122223333', bucket = 'uploads' } = options;
  const partSize = options.partSize ?? Math.max(1, content.length);
  const parts = [];
  for (let at = 0, i = 0; at < content.length; at += partSize, i++) {
    const key = `${id}/part.${i}`;
    const body = content.subarray(at, at + partSize);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    parts.push({ getUrl: await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: 600 }), size: body.length });
  }
  const now = new Date().toISOString();
  const doc: TaskDocument = {
    id, kind: 'import-volume', accountId, state: 'bundle-decrypted', statusMessage: 'Converting', progress: 10, bytesConverted: 0,
    request: { format, bytes: content.length, manifestUrl: 'http://unused/', volumeSizeGiB: 1 },
    artifacts: { source: { format, size: content.length, parts } },
    history: [{ at: now, from: null, to: 'bundle-decrypted' }], createdAt: now, updatedAt: now,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(),
    ...(options.lease ? { lease: options.lease } : {}),
    version: 0,
  };
  await tasks.create(doc);
  return doc;
}
