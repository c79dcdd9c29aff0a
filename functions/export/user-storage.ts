/**
 * The user's side of an export: the bucket is the account's, so it is reached with the
 * account's own object-storage key pair (from the task store), against the same S3 endpoint as
 * the service's, never with the service's key. A bucket the account cannot write to fails the
 * export (or bundle: BundleInstance writes there the same way) with a reason the user can act on.
 */
import { AbortMultipartUploadCommand, HeadBucketCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import { makeS3Client, s3StatusOf } from '../../toolkit/io/object-storage';
import { ClientError } from '../errors';
import type { StageContext } from '../stage';

/** What writes into the user's bucket, as its messages name it: an export (the default) or a bundle. */
export interface UserWrite {
  /** The thing written, as in "the export may not write to ...". */
  noun: string;
  /** What the user does once the bucket is fixed, as in "... and export again". */
  retry: string;
}

export const EXPORT_WRITE: UserWrite = { noun: 'export', retry: 'export again' };
export const BUNDLE_WRITE: UserWrite = { noun: 'bundle', retry: 'bundle the instance again' };

/** An S3 client signing with the account's first key pair; the caller destroys it. */
export async function accountS3Client(ctx: StageContext, accountId: string, write: UserWrite = EXPORT_WRITE): Promise<S3Client> {
  const keys = await ctx.tasks.listKeys(accountId);
  if (keys.length === 0) throw new ClientError(`account ${accountId} has no access key with which to write the ${write.noun}`);
  return makeS3Client({ ...ctx.config.storage, accessKeyId: keys[0].accessKeyId, secretAccessKey: keys[0].secretAccessKey });
}


/** A bucket that is not there, or not the account's to write, is the user's to fix: the task fails with that reason. */
export async function checkWritableBucket(s3: S3Client, bucket: string, write: UserWrite = EXPORT_WRITE): Promise<void> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (err) {
    const status = s3StatusOf(err);
    if (status === 404 || (err as Error).name === 'NotFound' || (err as Error).name === 'NoSuchBucket') {
      throw new ClientError(`the S3 bucket ${bucket} does not exist; create it (and allow the ${write.noun} to write to it) and ${write.retry}`);
    }
    if (status === 403 || status === 401) throw new ClientError(`the ${write.noun} may not write to the S3 bucket ${bucket} with your account's credentials; grant it write access and ${write.retry}`);
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
