/**
 * A bundle lives in its owner's bucket and is read with that account's own object-storage key,
 * never the service's: a task can read only what its account could read itself.
 */
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { isMissingObject, makeS3Client, s3StatusOf } from '../../toolkit/io/object-storage';
import { ClientError } from '../errors';
import type { StageContext } from '../stage';

/** Runs `work` with an S3 client signing as `accountId`. */
export async function withAccountS3<T>(ctx: StageContext, accountId: string, what: string, work: (s3: S3Client) => Promise<T>): Promise<T> {
  const keys = await ctx.tasks.listKeys(accountId);
  if (keys.length === 0) throw new ClientError(`account ${accountId} has no access key with which to read ${what}`);
  const s3 = makeS3Client({ ...ctx.config.storage, accessKeyId: keys[0].accessKeyId, secretAccessKey: keys[0].secretAccessKey });
  try {
    return await work(s3);
  } finally {
    s3.destroy();
  }
}

/**
 * The whole object, at most `maxBytes` of it; a missing or unreadable one is the user's to fix
 * (ClientError), anything else is transient and retried.
 */
export async function readAccountObject(s3: S3Client, bucket: string, key: string, maxBytes: number, what: string): Promise<Buffer> {
  let res;
  try {
    res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  } catch (err) {
    const status = s3StatusOf(err);
    if (isMissingObject(err) || status === 403) {
      throw new ClientError(`${what} s3://${bucket}/${key} is missing or cannot be read with your account's credentials (HTTP ${status ?? 404})`);
    }
    throw err;
  }
  const declared = Number(res.ContentLength ?? 0);
  if (declared > maxBytes) {
    await res.Body?.transformToWebStream().cancel().catch(() => undefined);
    throw new ClientError(`${what} s3://${bucket}/${key} is ${declared} bytes; at most ${maxBytes} are accepted`);
  }
  const body = Buffer.from(await res.Body!.transformToByteArray());
  if (body.length > maxBytes) throw new ClientError(`${what} s3://${bucket}/${key} is larger than ${maxBytes} bytes`);
  return body;
}
