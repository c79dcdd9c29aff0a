/**
 * The user's side of an export: the bucket is the account's, so it is reached with the
 * account's own object-storage key pair (from the task store), against the same S3 endpoint as
 * the service's, never with the service's key. A bucket the account cannot write to fails the
 * export with a reason the user can act on.
 */
import { AbortMultipartUploadCommand, HeadBucketCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import { makeS3Client } from '../../toolkit/io/object-storage';
import { ClientError } from '../errors';
import type { StageContext } from '../stage';

/** An S3 client signing with the account's first key pair; the caller destroys it. */
export async function accountS3Client(ctx: StageContext, accountId: string): Promise<S3Client> {
  const keys = await ctx.tasks.listKeys(accountId);
  if (keys.length === 0) throw new ClientError(`account ${accountId} has no access key with which to write the export`);
  return makeS3Client({ ...ctx.config.storage, accessKeyId: keys[0].accessKeyId, secretAccessKey: keys[0].secretAccessKey });
}

const statusOf = (err: unknown) => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;

/** A bucket that is not there, or not the account's to write, is the user's to fix: the task fails with that reason. */
export async function checkWritableBucket(s3: S3Client, bucket: string): Promise<void> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (err) {
    const status = statusOf(err);
    if (status === 404 || (err as Error).name === 'NotFound' || (err as Error).name === 'NoSuchBucket') {
      throw new ClientError(`the S3 bucket ${bucket} does not exist; create it (and allow the export to write to it) and export again`);
    }
    if (status === 403 || status === 401) throw new ClientError(`the export may not write to the S3 bucket ${bucket} with your account's credentials; grant it write access and export again`);
    throw err;
  }
}

/**
 * Aborts every multipart upload of exactly `key` (an export's key is its task's alone). A server
 * that cannot list uploads (s3rver) is left as it is: the sink's own abort is all there is then.
 */
export async function abortUploadsOf(s3: S3Client, bucket: string, key: string): Promise<void> {
  let listed;
  try {
    listed = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }));
  } catch {
    return;
  }
  for (const upload of listed.Uploads ?? []) {
    if (upload.Key !== key || !upload.UploadId) continue;
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: upload.UploadId })).catch(() => undefined);
  }
}
