/**
 * ImportImage / ImportSnapshot sources: one object in the caller's bucket (or at a URL of the
 * service's object storage) instead of an import manifest. It is read with the calling
 * account's own object-storage key, never the service's, so a task can only read what its
 * account could read itself. The object is described as a one-part manifest with presigned
 * URLs, so the stages after this one treat every import alike.
 */
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { ParsedImportManifest, TaskDocument } from '../../tasks/task';
import { makeS3Client } from '../../toolkit/io/object-storage';
import { ClientError } from '../errors';
import { assertAllowedUrl, headObjectSize, objectUrlPolicy } from '../object-fetch';
import type { StageContext } from '../stage';

/** SigV4 presigned URLs live at most 7 days. */
const URL_LIFETIME_SECONDS = 7 * 24 * 3600;
const GiB = 1024 ** 3;

export async function describeObjectSource(ctx: StageContext, task: TaskDocument): Promise<ParsedImportManifest> {
  const spec = task.request.importImage;
  if (!spec) throw new Error(`task ${task.id} has no object source`);
  const source = spec.source;
  let size: number;
  let headUrl: string;
  let getUrl: string;
  let key: string;
  if ('url' in source) {
    // The gateway accepted this URL: a refusal here is the service's setting.
    assertAllowedUrl(source.url, objectUrlPolicy(ctx.config, [source.url]), 'disk image');
    const head = await headObjectSize(source.url);
    if (head.kind === 'missing') throw new ClientError(`the disk image at ${new URL(source.url).pathname} does not exist or cannot be read (HTTP ${head.status})`);
    if (head.kind === 'unavailable') throw new Error(`HEAD ${new URL(source.url).host}: ${head.reason}`); // transient: retried
    ({ value: size } = head);
    headUrl = getUrl = source.url;
    key = new URL(source.url).pathname.replace(/^\//, '');
  } else {
    const keys = await ctx.tasks.listKeys(task.accountId);
    if (keys.length === 0) throw new ClientError(`account ${task.accountId} has no access key with which to read s3://${source.bucket}/${source.key}`);
    const s3 = makeS3Client({ ...ctx.config.storage, accessKeyId: keys[0].accessKeyId, secretAccessKey: keys[0].secretAccessKey });
    try {
      try {
        const head = await s3.send(new HeadObjectCommand({ Bucket: source.bucket, Key: source.key }));
        size = Number(head.ContentLength ?? 0);
      } catch (err) {
        const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (status === 404 || status === 403) {
          throw new ClientError(`Disk validation failed [We do not have access to the given resource. Reason ${status === 404 ? '404 Not Found' : '403 Forbidden'}]: s3://${source.bucket}/${source.key} cannot be read with your account's credentials`);
        }
        throw err;
      }
      const command = { Bucket: source.bucket, Key: source.key };
      headUrl = await getSignedUrl(s3, new HeadObjectCommand(command), { expiresIn: URL_LIFETIME_SECONDS });
      getUrl = await getSignedUrl(s3, new GetObjectCommand(command), { expiresIn: URL_LIFETIME_SECONDS });
    } finally {
      s3.destroy();
    }
    key = source.key;
  }
  if (size <= 0) throw new ClientError(`the disk image ${key} is empty`);
  return {
    version: 'object',
    fileFormat: task.request.format,
    size,
    volumeSizeGiB: Math.ceil(size / GiB),
    parts: [{ index: 0, start: 0, end: size - 1, key, headUrl, getUrl }],
  };
}
