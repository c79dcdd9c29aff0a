/**
 * BundleInstance, DescribeBundleTasks and CancelBundleTask on a real (in-memory SQLite) task
 * store: the task is recorded in export-requested over the instance's root volume and announced
 * to the export stage; the states EC2 reports follow the task; filters, cancel, and the bundle's
 * keys. The whole path (bundling, cancel in a bucket, RegisterImage) is in
 * test/e2e/bundle-instance-moto.test.ts.
 */
import { createHmac } from 'crypto';
import type { CloudEvent } from 'cloudevents';
import type { ActionContext } from '../../../gateway/actions/action';
import { runAction } from '../../../gateway/actions';
import { QueryParams } from '../../../gateway/query-request';
import { bundleKeys } from '../../../functions/export/bundle-instance';
import { BUNDLING_MESSAGE, STORING_MESSAGE, bundleTaskState } from '../../../tasks/bundle-task';
import { SqliteTaskStore } from '../../../tasks/sqlite-store';
import { transition, updateTask } from '../../../tasks/state-machine';
import type { TaskDocument } from '../../../tasks/task';

const ACCOUNT = '555555555555';
const OTHER = '666666666666';
const INSTANCE = 'i-0123456789abcdef0';
const VOLUME = 'vol-0123456789abcdef0';
const SECRET = 'secret-of-akid';
const source = { bucket: 'imaging-images', key: 'images/import-i-01234567/disk.raw', size: 2 * 2 ** 30 + 512 };

let store: SqliteTaskStore;
let events: CloudEvent<unknown>[];
let probed: string[];

const ctxFor = (accountId: string): ActionContext => ({
  caller: { accountId, accessKeyId: 'AKID' },
  tasks: store,
  publish: async (event) => void events.push(event),
  region: 'us-east-1',
  allowedObjectHosts: [],
  taskLifetimeMs: 60_000,
  now: () => new Date(),
  probeUserBucket: async (_account, bucket) => {
    probed.push(bucket);
    return bucket === 'missing-bucket' ? 'missing' : bucket === 'not-mine' ? 'forbidden' : 'ok';
  },
});

beforeEach(async () => {
  store = SqliteTaskStore.open(':memory:');
  events = [];
  probed = [];
  const createdAt = new Date().toISOString();
  await store.putResource({ id: VOLUME, kind: 'volume', accountId: ACCOUNT, taskId: 'import-i-01234567', sizeGiB: 3, image: source, createdAt });
  await store.putResource({ id: INSTANCE, kind: 'instance', accountId: ACCOUNT, taskId: 'import-i-01234567', state: 'stopped', volumeIds: [VOLUME], architecture: 'x86_64', createdAt });
  await store.createAccount({ accountId: ACCOUNT, name: 'alice', admin: false, createdAt });
  await store.createKey({ accessKeyId: 'AKID', secretAccessKey: SECRET, accountId: ACCOUNT, createdAt });
});
afterEach(() => store.close());

const base = { InstanceId: INSTANCE, 'Storage.S3.Bucket': 'my-bundles', 'Storage.S3.Prefix': 'images/web' };
const call = (action: string, entries: Record<string, string>, accountId = ACCOUNT) => runAction(action, new QueryParams(Object.entries(entries)), ctxFor(accountId)) as Promise<any>;
const codeOf = (promise: Promise<unknown>) => promise.then(() => 'ok', (e) => (e as { code?: string }).code ?? String(e));

test('BundleInstance records a bundle-instance task over the root volume and announces it to the export stage', async () => {
  const policy = Buffer.from('{"expiration":"2099-01-01T00:00:00Z"}').toString('base64');
  const signature = createHmac('sha1', SECRET).update(policy).digest('base64');
  const out = (await call('BundleInstance', { ...base, 'Storage.S3.AWSAccessKeyId': 'AKID', 'Storage.S3.UploadPolicy': policy, 'Storage.S3.UploadPolicySignature': signature })).bundleInstanceTask;
  expect(out).toMatchObject({ instanceId: INSTANCE, bundleId: expect.stringMatching(/^bun-[0-9a-f]{8}$/), state: 'pending', progress: '0%', storage: { S3: { bucket: 'my-bundles', prefix: 'images/web', AWSAccessKeyId: 'AKID', uploadPolicy: policy } } });
  const task = (await store.get(out.bundleId))!;
  expect(task).toMatchObject({ kind: 'bundle-instance', accountId: ACCOUNT, state: 'export-requested' });
  expect(task.request.bundleInstance).toMatchObject({ instanceId: INSTANCE, volumeId: VOLUME, source, architecture: 'x86_64', s3Bucket: 'my-bundles', s3Prefix: 'images/web' });
  expect(task.artifacts.image).toBeUndefined(); // never the volume's bytes: an ended task's image is deleted
  expect(events.map((e) => [e.type, (e.data as { taskId: string }).taskId])).toEqual([['io.imaging.export.requested', out.bundleId]]);
  expect(probed).toEqual(['my-bundles']);
  // One bundle of an instance at a time.
  expect(await codeOf(call('BundleInstance', { ...base, 'Storage.S3.Prefix': 'other' }))).toBe('BundlingInProgress');
});

test('every parameter is checked before anything is recorded; DryRun records nothing', async () => {
  const { 'Storage.S3.Bucket': _b, ...noBucket } = base;
  const { 'Storage.S3.Prefix': _p, ...noPrefix } = base;
  expect(await codeOf(call('BundleInstance', noBucket))).toBe('MissingParameter');
  expect(await codeOf(call('BundleInstance', noPrefix))).toBe('MissingParameter');
  expect(await codeOf(call('BundleInstance', { ...base, 'Storage.S3.Bucket': 'UPPER' }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('BundleInstance', { ...base, 'Storage.S3.Bucket': 'missing-bucket' }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('BundleInstance', { ...base, 'Storage.S3.Bucket': 'not-mine' }))).toBe('InvalidParameterValue');
  for (const prefix of ['dir/', 'a/../b/..', 'has space', 'x\ny']) expect(await codeOf(call('BundleInstance', { ...base, 'Storage.S3.Prefix': prefix }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('BundleInstance', { ...base, 'Storage.S3.UploadPolicy': 'e30=' }))).toBe('MissingParameter');
  expect(await codeOf(call('BundleInstance', { ...base, 'Storage.S3.AWSAccessKeyId': 'AKID', 'Storage.S3.UploadPolicy': 'e30=' }))).toBe('MissingParameter');
  expect(await codeOf(call('BundleInstance', { ...base, 'Storage.S3.AWSAccessKeyId': 'AKID', 'Storage.S3.UploadPolicy': 'e30=', 'Storage.S3.UploadPolicySignature': 'AAAA' }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('BundleInstance', { ...base, 'Storage.S3.AWSAccessKeyId': 'AKOTHER' }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('BundleInstance', { ...base, InstanceId: 'i-xyz' }))).toBe('InvalidInstanceID.Malformed');
  expect(await codeOf(call('BundleInstance', { ...base, InstanceId: 'i-0fffffffffffffff0' }))).toBe('InvalidInstanceID.NotFound');
  expect(await codeOf(call('BundleInstance', base, OTHER))).toBe('InvalidInstanceID.NotFound');
  expect(await codeOf(call('BundleInstance', { ...base, DryRun: 'true' }))).toBe('DryRunOperation');
  expect(await store.list({ accountId: ACCOUNT })).toEqual([]);
  expect(events).toEqual([]);
});

test('DescribeBundleTasks: EC2 states follow the task, filters of the model, other accounts see nothing', async () => {
  const { bundleId } = (await call('BundleInstance', base)).bundleInstanceTask;
  const stateNow = async () => (await call('DescribeBundleTasks', { 'BundleId.1': bundleId })).bundleInstanceTasksSet[0];
  const set = (mutate: (doc: TaskDocument) => TaskDocument) => updateTask(store, bundleId, mutate);
  expect((await stateNow()).state).toBe('pending');
  await set((doc) => ({ ...doc, statusMessage: BUNDLING_MESSAGE, progress: 41.7 }));
  expect(await stateNow()).toMatchObject({ state: 'bundling', progress: '41%' });
  await set((doc) => ({ ...doc, statusMessage: STORING_MESSAGE }));
  expect((await stateNow()).state).toBe('storing');
  await set((doc) => transition(doc, 'failed', 'ClientError: the S3 bucket my-bundles does not exist'));
  expect(await stateNow()).toMatchObject({ state: 'failed', error: { code: 'Client.BundleFailed', message: 'the S3 bucket my-bundles does not exist' } });

  const filter = (name: string, value: string) => call('DescribeBundleTasks', { 'Filter.1.Name': name, 'Filter.1.Value.1': value }).then((o) => o.bundleInstanceTasksSet.map((t: any) => t.bundleId));
  expect(await filter('bundle-state', 'failed')).toEqual([bundleId]);
  expect(await filter('bundle-state', 'complete')).toEqual([]);
  expect(await filter('s3-prefix', 'images/*')).toEqual([bundleId]);
  expect(await filter('error-code', 'Client.*')).toEqual([bundleId]);
  expect(await filter('instance-id', INSTANCE)).toEqual([bundleId]);
  expect(await codeOf(call('DescribeBundleTasks', { 'Filter.1.Name': 'state', 'Filter.1.Value.1': 'x' }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('DescribeBundleTasks', { 'BundleId.1': bundleId }, OTHER))).toBe('InvalidBundleID.NotFound');
  expect((await call('DescribeBundleTasks', {}, OTHER)).bundleInstanceTasksSet).toEqual([]);
});

test('CancelBundleTask asks the export stage to stop (cancelling); an ended task or another account\'s is refused', async () => {
  const { bundleId } = (await call('BundleInstance', base)).bundleInstanceTask;
  expect(await codeOf(call('CancelBundleTask', { BundleId: bundleId }, OTHER))).toBe('InvalidBundleID.NotFound');
  const out = (await call('CancelBundleTask', { BundleId: bundleId })).bundleInstanceTask;
  expect(out).toMatchObject({ bundleId, state: 'cancelling' });
  expect((await store.get(bundleId))!.cancelRequested).toMatchObject({ reason: 'Canceled by user' });
  await updateTask(store, bundleId, (doc) => transition(doc, 'cancelled', 'Canceled by user'));
  const ended = (await call('DescribeBundleTasks', { 'BundleId.1': bundleId })).bundleInstanceTasksSet[0];
  expect(ended).toMatchObject({ state: 'failed', error: { code: 'Canceled', message: 'Canceled by user' } });
  expect(await codeOf(call('CancelBundleTask', { BundleId: bundleId }))).toBe('IncorrectState');
  expect(await codeOf(call('CancelBundleTask', { BundleId: 'bun-nothere' }))).toBe('InvalidBundleID.NotFound');
  expect(bundleTaskState({ ...(await store.get(bundleId))!, state: 'completed' })).toBe('complete');
});

test('bundle keys: <prefix>.manifest.xml and <prefix>.part.NN, and nothing else counts as the bundle\'s', () => {
  const keys = bundleKeys({ s3Prefix: 'images/web.v1' });
  expect([keys.dir, keys.base, keys.manifestKey]).toEqual(['images/', 'web.v1', 'images/web.v1.manifest.xml']);
  expect(['images/web.v1.manifest.xml', 'images/web.v1.part.00', 'images/web.v1.part.123'].every(keys.isBundleFile)).toBe(true);
  expect(['images/web.v1.part.00.bak', 'images/web.v1.partial', 'images/webXv1.part.00', 'images/web.v1.manifest.xml.old', 'web.v1.part.00'].some(keys.isBundleFile)).toBe(false);
  expect(bundleKeys({ s3Prefix: 'flat' }).manifestKey).toBe('flat.manifest.xml');
});
