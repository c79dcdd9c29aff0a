/**
 * Reading a user's object as that user: the account's own access key signs the request, so the
 * gateway can read only what the account itself could (a bundle manifest named by RegisterImage).
 */
import { GetObjectCommand, HeadBucketCommand } from '@aws-sdk/client-s3';
import type { TaskStore } from '../tasks/store';
import { makeS3Client, type ObjectStorageConfig } from '../toolkit/io/object-storage';

type Endpoint = Omit<ObjectStorageConfig, 'accessKeyId' | 'secretAccessKey'>;

/** A reader for GatewayDeps.readUserObject: undefined for a missing, forbidden or oversized object. */
export function userObjectReader(tasks: TaskStore, storage: Endpoint) {
  return async (accountId: string, bucket: string, key: string, maxBytes: number): Promise<Buffer | undefined> => {
    const keys = await tasks.listKeys(accountId);
    if (keys.length === 0) return undefined;
    const s3 = makeS3Client({ ...storage, accessKeyId: keys[0].accessKeyId, secretAccessKey: keys[0].secretAccessKey });
    try {
      const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=0-${maxBytes}` }));
      const body = Buffer.from(await res.Body!.transformToByteArray());
      return body.length > maxBytes ? undefined : body;
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404 || status === 403 || status === 416 || (err as Error).name === 'NoSuchKey' || (err as Error).name === 'NoSuchBucket') return undefined;
      throw err;
    } finally {
      s3.destroy();
    }
  };
}

/** What an account finds at a bucket with its own key. */
export type UserBucketProbe = 'ok' | 'missing' | 'forbidden';

/** A prober for GatewayDeps.probeUserBucket: HEAD of the bucket, signed with the account's first key. */
export function userBucketProber(tasks: TaskStore, storage: Endpoint) {
  return async (accountId: string, bucket: string): Promise<UserBucketProbe> => {
    const keys = await tasks.listKeys(accountId);
    if (keys.length === 0) return 'forbidden';
    const s3 = makeS3Client({ ...storage, accessKeyId: keys[0].accessKeyId, secretAccessKey: keys[0].secretAccessKey });
    try {
      await s3.send(new HeadBucketCommand({ Bucket: bucket }));
      return 'ok';
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404 || (err as Error).name === 'NotFound' || (err as Error).name === 'NoSuchBucket') return 'missing';
      if (status === 403 || status === 401) return 'forbidden';
      throw err;
    } finally {
      s3.destroy();
    }
  };
}
