/**
 * BundleInstance, DescribeBundleTasks and CancelBundleTask: an imported instance's root volume
 * becomes an EC2 image bundle (`<Prefix>.manifest.xml` and `<Prefix>.part.NN`) in the caller's
 * bucket. A bundle task is a task of kind bundle-instance that starts in `export-requested` and is
 * finished by the export stage (pipeline/table.ts), which writes into user buckets with the
 * account's own key already; no stage of its own.
 *
 * The service holds no private key of the user's, so the manifest is signed with the cloud key
 * and names the account as its <user>; RegisterImage accepts a manifest signed by the cloud key
 * only for that account (functions/bundle/verify-manifest.ts).
 *
 * EC2 states: pending (queued), bundling (parts being written), storing (the manifest being
 * written), cancelling, complete, failed. A task that ended cancelled shows failed with the
 * error Code `Canceled`. The model has no ClientToken for BundleInstance; a second bundle of an
 * instance while one is unfinished is refused (BundlingInProgress), as in EC2.
 */
import { createHmac, timingSafeEqual } from 'crypto';
import { BUNDLE_PENDING_MESSAGE, bundleTaskState } from '../../tasks/bundle-task';
import { newBundleTaskId } from '../../tasks/ids';
import { isTerminal, updateTask } from '../../tasks/state-machine';
import type { BundleInstanceRequest, InstanceRecord, TaskDocument } from '../../tasks/task';
import { Ec2Error, invalidValue } from '../errors';
import type { QueryParams } from '../query-request';
import type { XmlObject } from '../xml';
import type { ActionContext, ActionHandler } from './action';
import { applyFilters, parseFilters } from './describe-common';
import { CANCELED_BY_USER } from './export-request';
import { announceTask, createWithFreshId, withStartEvent } from './start-task';

const INSTANCE_ID = /^i-([0-9a-f]{8}|[0-9a-f]{17})$/;
const BUNDLE_ID = /^bun-[0-9a-z]{8,17}$/;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
/** The prefix's last segment names the bundle's files: the characters a bundle manifest accepts in a part's filename. */
const FILE_PREFIX = /^[A-Za-z0-9._+-][A-Za-z0-9._+=@-]{0,199}$/;
const MAX_PREFIX_CHARS = 512;

/** BundleTaskError of an ended task: `ClientError: …` → Client.…, a cancel → Canceled. */
function bundleTaskError(task: TaskDocument): { code: string; message: string } | undefined {
  if (task.state === 'cancelled') return { code: 'Canceled', message: task.statusMessage || CANCELED_BY_USER };
  if (task.state !== 'failed') return undefined;
  const m = /^(ClientError|ServerError): (.*)$/s.exec(task.statusMessage);
  if (!m) return { code: 'Server.InternalError', message: task.statusMessage };
  return { code: m[1] === 'ClientError' ? 'Client.BundleFailed' : 'Server.InternalError', message: m[2] };
}

/** EC2's BundleTask. `bytesBundled` is ours (SDKs skip it; our CLI reads it). */
export function bundleTaskXml(task: TaskDocument): XmlObject {
  const request = task.request.bundleInstance!;
  const error = bundleTaskError(task);
  return {
    instanceId: request.instanceId,
    bundleId: task.id,
    state: bundleTaskState(task),
    startTime: task.createdAt,
    updateTime: task.updatedAt,
    storage: {
      S3: {
        bucket: request.s3Bucket,
        prefix: request.s3Prefix,
        AWSAccessKeyId: request.awsAccessKeyId,
        uploadPolicy: request.uploadPolicy,
      },
    },
    progress: `${Math.max(0, Math.min(100, Math.floor(task.progress)))}%`,
    ...(error ? { error } : {}),
    bytesBundled: task.bytesConverted,
  };
}

/** Storage.S3.Prefix: non-empty, printable, its last segment (after any '/') a safe file name. */
function checkPrefix(prefix: string): void {
  const base = prefix.slice(prefix.lastIndexOf('/') + 1);
  // eslint-disable-next-line no-control-regex
  if (prefix.length > MAX_PREFIX_CHARS || /[\x00-\x1f]/.test(prefix) || !FILE_PREFIX.test(base) || base.includes('..')) {
    throw invalidValue('Storage.S3.Prefix', prefix, `It must be at most ${MAX_PREFIX_CHARS} printable characters and end in a file name of letters, digits and . _ + = @ - (the bundle is <Prefix>.manifest.xml and <Prefix>.part.NN).`);
  }
}

/**
 * Storage.S3.AWSAccessKeyId, UploadPolicy and UploadPolicySignature: EC2 needs them to write into
 * the bucket; here the export stage writes with the account's own key anyway, so they are
 * optional, but what is given must hold: the key is one of the caller's, and the signature is
 * that key's HMAC-SHA1 of the policy as sent (base64), as S3 POST policies are signed.
 */
async function checkUploadPolicy(params: QueryParams, ctx: ActionContext): Promise<Pick<BundleInstanceRequest, 'awsAccessKeyId' | 'uploadPolicy'>> {
  const awsAccessKeyId = params.string('Storage.S3.AWSAccessKeyId') || undefined;
  const uploadPolicy = params.string('Storage.S3.UploadPolicy') || undefined;
  const signature = params.string('Storage.S3.UploadPolicySignature') || undefined;
  if (!awsAccessKeyId) {
    if (uploadPolicy || signature) throw new Ec2Error('MissingParameter', 'The request must contain the parameter Storage.S3.AWSAccessKeyId to go with the upload policy');
    return {};
  }
  const key = (await ctx.tasks.listKeys(ctx.caller.accountId)).find((k) => k.accessKeyId === awsAccessKeyId);
  if (!key) throw invalidValue('Storage.S3.AWSAccessKeyId', awsAccessKeyId, 'It must be an access key of your own account.');
  if (!uploadPolicy !== !signature) throw new Ec2Error('MissingParameter', 'Storage.S3.UploadPolicy and Storage.S3.UploadPolicySignature go together: give both or neither');
  if (uploadPolicy && signature) {
    const expected = createHmac('sha1', key.secretAccessKey).update(uploadPolicy, 'utf8').digest();
    const given = Buffer.from(signature, 'base64');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new Ec2Error('InvalidParameterValue', 'Storage.S3.UploadPolicySignature is not the HMAC-SHA1 of Storage.S3.UploadPolicy with the secret key of Storage.S3.AWSAccessKeyId');
    }
  }
  return { awsAccessKeyId, ...(uploadPolicy ? { uploadPolicy } : {}) };
}

const instanceNotFound = (id: string) => new Ec2Error('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);

export const bundleInstance: ActionHandler<BundleInstanceRequest> = {
  async validate(params, ctx) {
    const instanceId = params.requiredString('InstanceId');
    if (!INSTANCE_ID.test(instanceId)) throw new Ec2Error('InvalidInstanceID.Malformed', `Invalid id: "${instanceId}"`);
    const s3Bucket = params.requiredString('Storage.S3.Bucket');
    if (!BUCKET.test(s3Bucket)) throw invalidValue('Storage.S3.Bucket', s3Bucket, 'It must be a valid S3 bucket name.');
    const s3Prefix = params.requiredString('Storage.S3.Prefix');
    checkPrefix(s3Prefix);
    const policy = await checkUploadPolicy(params, ctx);

    // Another account's instance is reported exactly like a missing one.
    const instance = await ctx.tasks.getResource(instanceId);
    if (!instance || instance.kind !== 'instance' || instance.accountId !== ctx.caller.accountId) throw instanceNotFound(instanceId);
    const volume = instance.volumeIds[0] ? await ctx.tasks.getResource(instance.volumeIds[0]) : undefined;
    if (!volume || volume.kind !== 'volume' || volume.accountId !== ctx.caller.accountId) {
      throw new Ec2Error('UnsupportedOperation', `The instance ${instanceId} has no imported root volume to bundle: only instances imported by ImportInstance, with their volume, can be bundled`);
    }
    const unfinished = await ctx.tasks.list({ accountId: ctx.caller.accountId, kinds: ['bundle-instance'] });
    const busy = unfinished.find((t) => !isTerminal(t.state) && t.request.bundleInstance?.instanceId === instanceId);
    if (busy) throw new Ec2Error('BundlingInProgress', `The instance ${instanceId} is already being bundled by ${busy.id}; wait for it to end or cancel it`);
    if (ctx.probeUserBucket) {
      const found = await ctx.probeUserBucket(ctx.caller.accountId, s3Bucket);
      if (found !== 'ok') {
        throw invalidValue('Storage.S3.Bucket', s3Bucket, found === 'missing'
          ? 'The bucket does not exist: create it first.'
          : 'Your account may not write to that bucket with its credentials.');
      }
    }
    return {
      instanceId,
      volumeId: volume.id,
      source: volume.image,
      architecture: (instance as InstanceRecord).architecture,
      s3Bucket,
      s3Prefix,
      ...policy,
    };
  },

  async run(request, ctx) {
    const now = ctx.now();
    const at = now.toISOString();
    const task = await createWithFreshId(ctx, newBundleTaskId, (id): TaskDocument => withStartEvent({
      id,
      kind: 'bundle-instance',
      accountId: ctx.caller.accountId,
      state: 'export-requested',
      statusMessage: BUNDLE_PENDING_MESSAGE,
      progress: 0,
      bytesConverted: 0,
      request: {
        format: 'RAW',
        bytes: request.source.size,
        manifestUrl: '',
        volumeSizeGiB: Math.max(1, Math.ceil(request.source.size / 1024 ** 3)),
        bundleInstance: request,
      },
      artifacts: {},
      history: [{ at, from: null, to: 'export-requested', message: BUNDLE_PENDING_MESSAGE }],
      createdAt: at,
      updatedAt: at,
      expiresAt: new Date(now.getTime() + ctx.taskLifetimeMs).toISOString(),
      version: 0,
    }, 'io.imaging.export.requested'));
    await announceTask(ctx, task);
    return { bundleInstanceTask: bundleTaskXml(task) };
  },
};

const unknownBundles = (ids: string[]) =>
  new Ec2Error('InvalidBundleID.NotFound', ids.length === 1 ? `The bundle task ID '${ids[0]}' does not exist` : `The bundle task IDs ${ids.map((id) => `'${id}'`).join(', ')} do not exist`);

const FILTER_FIELDS: Record<string, (task: TaskDocument) => string | undefined> = {
  'bundle-id': (t) => t.id,
  'bundle-state': (t) => bundleTaskState(t),
  'instance-id': (t) => t.request.bundleInstance?.instanceId,
  's3-bucket': (t) => t.request.bundleInstance?.s3Bucket,
  's3-prefix': (t) => t.request.bundleInstance?.s3Prefix,
  'error-code': (t) => bundleTaskError(t)?.code,
  'error-message': (t) => bundleTaskError(t)?.message,
  progress: (t) => `${Math.floor(t.progress)}%`,
  'start-time': (t) => t.createdAt,
  'update-time': (t) => t.updatedAt,
};

export const describeBundleTasks: ActionHandler<TaskDocument[]> = {
  async validate(params, ctx) {
    const ids = [...new Set(params.list('BundleId'))];
    const malformed = ids.filter((id) => !BUNDLE_ID.test(id));
    if (malformed.length) throw unknownBundles(malformed);
    const filters = parseFilters(params, 'Filter', Object.keys(FILTER_FIELDS));
    const found = await ctx.tasks.list({ accountId: ctx.caller.accountId, kinds: ['bundle-instance'], ...(ids.length ? { ids } : {}) });
    const owned = found.filter((t) => t.accountId === ctx.caller.accountId && t.kind === 'bundle-instance' && t.request.bundleInstance);
    const missing = ids.filter((id) => !owned.some((t) => t.id === id));
    if (missing.length) throw unknownBundles(missing);
    return applyFilters(owned, filters, (t, name) => [FILTER_FIELDS[name](t)]);
  },

  async run(tasks) {
    return { bundleInstanceTasksSet: tasks.map(bundleTaskXml) };
  },
};

const alreadyEnded = (task: TaskDocument) =>
  new Ec2Error('IncorrectState', `Bundle task ${task.id} has already ended (${bundleTaskState(task)}); only a pending or running task can be cancelled`);

export const cancelBundleTask: ActionHandler<string> = {
  async validate(params, ctx) {
    const id = params.requiredString('BundleId');
    if (!BUNDLE_ID.test(id)) throw unknownBundles([id]);
    const task = await ctx.tasks.get(id);
    if (!task || task.accountId !== ctx.caller.accountId || task.kind !== 'bundle-instance') throw unknownBundles([id]);
    if (isTerminal(task.state)) throw alreadyEnded(task);
    return id;
  },

  async run(id, ctx) {
    let ended: TaskDocument | undefined;
    const task = await updateTask(ctx.tasks, id, (doc) => {
      if (isTerminal(doc.state)) {
        ended = doc;
        return undefined;
      }
      // The export stage sees the request while it works, removes what it wrote and ends the task.
      if (doc.cancelRequested) return undefined;
      const at = ctx.now().toISOString();
      return { ...doc, cancelRequested: { at, reason: CANCELED_BY_USER }, updatedAt: at };
    });
    if (ended) throw alreadyEnded(ended);
    return { bundleInstanceTask: bundleTaskXml(task!) };
  },
};
