/**
 * The export stage's work for a BundleInstance: the instance's root volume (its raw image in the
 * image store, read with the service's key) becomes an EC2 image bundle in the user's bucket,
 * written with the account's own key (user-storage.ts): `<Prefix>.part.NN` as they are made, then
 * `<Prefix>.manifest.xml` last, so a manifest in the bucket means a whole bundle.
 *
 * The service holds no private key of the user's: the manifest is signed with the cloud key and
 * names the account as its <user> (RegisterImage accepts a cloud-signed manifest for that account
 * only); the AES key is wrapped for the cloud certificate (ec2_encrypted_key) and for the
 * account's first signing certificate, or the cloud's when it has none (user_encrypted_key).
 *
 * A cancellation (or any failure) removes every file of the bundle this task wrote, after the
 * part uploads under way have settled, so nothing of it stays in the user's bucket.
 */
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { BUNDLING_MESSAGE, STORING_MESSAGE } from '../../tasks/bundle-task';
import { listSigningCertificates } from '../../tasks/signing-certificates';
import { isTerminal, updateTask } from '../../tasks/state-machine';
import type { BundleInstanceRequest, StoredObject, TaskDocument } from '../../tasks/task';
import { bundleImage, DEFAULT_BUNDLE_PART_SIZE, type BundleResult } from '../../toolkit/bundle/bundle-writer';
import { cloudCertificate } from '../../toolkit/bundle/cloud-key';
import { ConversionCancelledError } from '../../toolkit/convert/cancellation';
import { ClientError } from '../errors';
import { holdsLease, stillHolds } from '../lease';
import { clearPrefix } from '../leftovers';
import { TaskProgress } from '../progress';
import type { StageContext } from '../stage';
import { advanceToNext } from '../task-step';
import { accountS3Client, BUNDLE_WRITE, checkWritableBucket } from './user-storage';
import { isMissingObject } from '../../toolkit/io/object-storage';

/** Part uploads one bundle keeps going while it makes the next part: memory is this many parts, plus one. */
const PARTS_IN_FLIGHT = 2;
/** How often progress is written (and a cancel noticed): often, as each part written after a cancel is one more to remove. */
const PROGRESS_INTERVAL_MS = 250;
/** Bundling is this share of the task's progress; the manifest and the step's end take the rest. */
const BUNDLING_PROGRESS: readonly [number, number] = [0, 95];

/** Where a bundle's files go: the prefix's "directory" part, and its last segment, which starts every file name. */
export function bundleKeys(request: Pick<BundleInstanceRequest, 's3Prefix'>): { dir: string; base: string; manifestKey: string; isBundleFile(key: string): boolean } {
  const slash = request.s3Prefix.lastIndexOf('/');
  const dir = request.s3Prefix.slice(0, slash + 1);
  const base = request.s3Prefix.slice(slash + 1);
  const manifestKey = `${dir}${base}.manifest.xml`;
  const partKey = new RegExp(`^${(dir + base).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.part\\.\\d+$`);
  return { dir, base, manifestKey, isBundleFile: (key) => key === manifestKey || partKey.test(key) };
}

export async function bundleInstanceWork(task: TaskDocument, taskId: string, ctx: StageContext): Promise<void> {
  const request = task.request.bundleInstance!;
  const cloudKey = ctx.config.cloudPrivateKey;
  if (!cloudKey) throw new ClientError('this service has no cloud key (IMAGING_CLOUD_KEY_FILE), with which bundles are signed and encrypted; ask the operator to configure one');
  const userS3 = await accountS3Client(ctx, task.accountId, BUNDLE_WRITE);
  try {
    await checkWritableBucket(userS3, request.s3Bucket, BUNDLE_WRITE);
    const keys = bundleKeys(request);
    const certificates = await listSigningCertificates(ctx.tasks, task.accountId);
    const cloudCert = cloudCertificate(cloudKey);
    await setStatus(ctx, taskId, BUNDLING_MESSAGE);

    const progress = new TaskProgress(ctx, taskId, BUNDLING_PROGRESS, PROGRESS_INTERVAL_MS);
    const signal = ctx.signal ? AbortSignal.any([progress.abort.signal, ctx.signal]) : progress.abort.signal;
    const uploads = new Set<Promise<void>>();
    // A failed part upload is kept here, not left as a rejected promise nobody may be awaiting yet.
    let uploadFailure: { error: unknown } | undefined;
    const partKeys: string[] = [];
    let bytesRead = 0;
    let manifest: BundleResult;
    let image: (AsyncIterable<Buffer> & { destroy?(): void }) | undefined;
    try {
      image = await readImage(ctx.s3, request, signal);
      const body = image;
      const result = await bundleImage({
        name: keys.base,
        prefix: keys.base,
        image: (async function* () {
          for await (const chunk of body) {
            bytesRead += chunk.length;
            yield chunk;
          }
        })(),
        size: request.source.size,
        partSize: DEFAULT_BUNDLE_PART_SIZE,
        cloudCertificate: cloudCert,
        userCertificate: certificates[0]?.pem ?? cloudCert,
        signingKey: cloudKey,
        architecture: request.architecture,
        user: task.accountId,
        onProgress: (done, total) => progress.report(done, total),
        async writePart(filename, bytes) {
          if (signal.aborted) throw new ConversionCancelledError();
          const key = keys.dir + filename;
          partKeys.push(key);
          // Not cut off by a cancel: a request aborted mid-way could still land after the clean-up.
          const upload: Promise<void> = putObject(userS3, request.s3Bucket, key, bytes)
            .catch((error: unknown) => void (uploadFailure ??= { error }))
            .finally(() => uploads.delete(upload));
          uploads.add(upload);
          while (uploads.size > PARTS_IN_FLIGHT) await Promise.race(uploads);
          if (uploadFailure) throw uploadFailure.error;
        },
      });
      await Promise.all(uploads);
      if (uploadFailure) throw uploadFailure.error;
      manifest = result;
      await progress.flush(request.source.size, request.source.size);
      // The last word before the manifest makes the bundle whole: a cancel that came meanwhile wins.
      if (signal.aborted || (await cancelRequested(ctx, taskId))) throw new ConversionCancelledError();
      await setStatus(ctx, taskId, STORING_MESSAGE);
      await putObject(userS3, request.s3Bucket, keys.manifestKey, Buffer.from(result.manifestXml, 'utf8'));
    } catch (err) {
      // The image store's response, when the failure was not in reading it, is not read to its end.
      image?.destroy?.();
      await Promise.allSettled(uploads);
      if (await stillHolds(ctx, taskId)) await removeBundle(userS3, request.s3Bucket, keys);
      // Cancelled by the user: end the task as cancelled (a lost lease is told apart by runStep).
      if (progress.abort.signal.aborted || signal.aborted) throw new ConversionCancelledError();
      throw err;
    }
    if ((ctx.attempt?.epoch ?? ctx.delivery.attempt) > 1) {
      // An earlier attempt may have written parts past this one's last (the keys are the same names).
      await clearPrefix(userS3, request.s3Bucket, keys.dir + keys.base + '.', (key) => !keys.isBundleFile(key) || key === keys.manifestKey || partKeys.includes(key));
    }
    const bundled = { bucket: request.s3Bucket, manifestKey: keys.manifestKey, partKeys, bundledSize: manifest.bundledSize };
    ctx.recordTransfer?.({ bytesRead, bytesWritten: manifest.bundledSize });
    await advanceToNext(ctx, 'export', taskId, (doc) => ({ artifacts: { ...doc.artifacts, bundled }, bytesConverted: request.source.size }));
  } finally {
    userS3.destroy();
  }
}

/** The raw root volume as a stream; gone (the volume deleted since) is the user's doing. */
async function readImage(s3: S3Client, request: BundleInstanceRequest, signal: AbortSignal): Promise<AsyncIterable<Buffer> & { destroy?(): void }> {
  const source: StoredObject = request.source;
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: source.bucket, Key: source.key }), { abortSignal: signal });
    return res.Body as unknown as AsyncIterable<Buffer> & { destroy?(): void };
  } catch (err) {
    if (isMissingObject(err)) {
      throw new ClientError(`the disk to bundle is gone: volume ${request.volumeId} of instance ${request.instanceId} was deleted`);
    }
    throw err;
  }
}

async function putObject(s3: S3Client, bucket: string, key: string, body: Buffer): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length }));
}

/** Every file of the bundle in the bucket (this attempt's and any earlier one's), and any upload of one. */
async function removeBundle(s3: S3Client, bucket: string, keys: ReturnType<typeof bundleKeys>): Promise<void> {
  await clearPrefix(s3, bucket, keys.dir + keys.base + '.', (key) => !keys.isBundleFile(key));
}

/** The step's status message (what DescribeBundleTasks reports as the state), while this attempt holds the task. */
async function setStatus(ctx: StageContext, taskId: string, statusMessage: string): Promise<void> {
  await updateTask(ctx.tasks, taskId, (doc) => {
    if (isTerminal(doc.state) || doc.statusMessage === statusMessage) return undefined;
    if (ctx.attempt && !holdsLease(doc, ctx.attempt)) return undefined;
    return { ...doc, statusMessage, updatedAt: new Date().toISOString() };
  });
}

async function cancelRequested(ctx: StageContext, taskId: string): Promise<boolean> {
  const doc = await ctx.tasks.get(taskId);
  return !doc || isTerminal(doc.state) || !!doc.cancelRequested;
}
