/**
 * The disks of an instance end together (functions/instance-group.ts), tested on the stages
 * with real parts (SQLite store, s3rver): a failed disk ends the instance and its other disks
 * with one pass that a redelivery repeats without changing anything; a disk a stage holds is
 * only marked, for that stage to end; and a register that writes its volume while the instance
 * ends, before or after the ending looked, leaves no record behind. The races are made
 * deterministic by running the ending from inside the register's own store calls.
 */
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import pino from 'pino';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskStore } from '../../tasks/store';
import type { ResourceRecord, StoredObject, TaskDocument, TaskState } from '../../tasks/task';
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { registerStage } from '../../functions/register/register-stage';
import { endInstanceWithDisk } from '../../functions/instance-group';
import { cancelTask, failTask } from '../../functions/task-step';
import type { StageContext } from '../../functions/stage';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { seededBytes } from '../helpers/disk-corpus';

const ACCOUNT = '111122223333';
const BUCKET = 'group-images';
let s3: RunningS3Server;
let store: SqliteTaskStore;
/** Runs inside the register's store calls, to end the group at a chosen point. */
let beforePut: ((resource: ResourceRecord) => Promise<void>) | undefined;
let afterPut: ((resource: ResourceRecord) => Promise<void>) | undefined;

/** The store the stages see: the real one, with the hooks around putResource. */
function hookedStore(): TaskStore {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'putResource') {
        return async (resource: ResourceRecord) => {
          await beforePut?.(resource);
          await target.putResource(resource);
          await afterPut?.(resource);
        };
      }
      const value = (target as unknown as Record<string | symbol, unknown>)[prop];
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as TaskStore;
}

function context(): StageContext {
  return {
    tasks: hookedStore(),
    s3: s3.s3,
    config: {
      storage: { endpoint: s3.endpoint, region: 'us-east-1', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, forcePathStyle: true },
      imageBucket: BUCKET,
      allowedObjectHosts: [new URL(s3.endpoint).host],
      uploadPollMs: 100,
      memoryLimitBytes: 64 * 2 ** 20,
    },
    publish: async () => undefined,
    delivery: { attempt: 1, working: () => undefined },
    log: pino({ level: 'silent' }),
  };
}

/** A converted disk in the image store under the task's prefix, as the convert stage leaves it. */
async function storedImage(taskId: string): Promise<StoredObject> {
  const key = `images/${taskId}/attempt-1/disk.raw`;
  const body = seededBytes(64 * 1024, taskId.length);
  await s3.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  return { bucket: BUCKET, key, size: body.length, sha256: '00'.repeat(32) };
}

interface DiskSpec {
  state: TaskState;
  image?: boolean;
  /** Registered: its volume id on the task and the volume record. */
  volume?: string;
  /** Held by a stage (a live lease). */
  held?: boolean;
}

/** An instance task (disk 1) and its further disks' volume tasks, in the states given. */
async function group(prefix: string, specs: DiskSpec[]): Promise<string[]> {
  const ids = specs.map((_, i) => (i === 0 ? `import-i-${prefix}0${i + 1}` : `import-vol-${prefix}0${i + 1}`));
  const now = new Date().toISOString();
  for (const [i, spec] of specs.entries()) {
    const image = spec.image ? await storedImage(ids[i]) : undefined;
    const doc: TaskDocument = {
      id: ids[i], kind: i === 0 ? 'import-instance' : 'import-volume', accountId: ACCOUNT, state: spec.state, statusMessage: '', progress: 50, bytesConverted: 0,
      request: {
        format: 'RAW', bytes: 65536, manifestUrl: 'http://unused/', volumeSizeGiB: 1,
        ...(i === 0 ? { instance: { instanceId: `i-${prefix}00000000000000`.slice(0, 19), architecture: 'x86_64', volumeTaskIds: ids.slice(1) } } : { partOf: { taskId: ids[0], diskIndex: i + 1 } }),
      },
      artifacts: { ...(image ? { image } : {}), ...(spec.volume ? { volumeId: spec.volume } : {}) },
      history: [], createdAt: now, updatedAt: now, expiresAt: new Date(Date.now() + 3600_000).toISOString(),
      ...(spec.held ? { lease: { holder: 'another-replica', stage: 'convert', epoch: 1, expiresAt: new Date(Date.now() + 60_000).toISOString() } } : {}),
      version: 0,
    };
    await store.create(doc);
    if (spec.volume && image) {
      await store.putResource({ id: spec.volume, kind: 'volume', accountId: ACCOUNT, taskId: ids[i], sizeGiB: 1, image, createdAt: now });
    }
  }
  return ids;
}

async function keysUnder(taskId: string): Promise<string[]> {
  const listed = await s3.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `images/${taskId}/` }));
  return (listed.Contents ?? []).map((o) => o.Key!);
}

async function volumesOf(ids: string[]): Promise<string[]> {
  const all = await store.listResources({ kind: 'volume', accountId: ACCOUNT });
  return all.filter((v) => ids.includes((v as { taskId: string }).taskId)).map((v) => v.id);
}

const registerEvent = (taskId: string) => makeEvent(EVENT_TYPES.bootChecked, { taskId, accountId: ACCOUNT }, 'test');

beforeAll(async () => {
  s3 = await startS3Server();
  await s3.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  store = SqliteTaskStore.open(':memory:');
});

afterAll(async () => {
  await store.close();
  await s3.stop();
});

afterEach(() => {
  beforePut = undefined;
  afterPut = undefined;
});

test('a failed disk ends the waiting instance and a completed disk at once, marks the disk a stage holds; a second pass changes nothing', async () => {
  const [instance, completed, held, failing] = await group('0000a1', [
    { state: 'boot-checked', image: true, volume: 'vol-0000a101' },
    { state: 'completed', image: true, volume: 'vol-0000a102' },
    { state: 'bundle-decrypted', image: true, held: true },
    { state: 'disk-converted', image: true },
  ]);
  const ctx = context();
  await failTask(ctx, failing, 'ClientError: the disk is broken');

  const docs = await Promise.all([instance, completed, held, failing].map((id) => store.get(id)));
  expect(docs.map((d) => [d!.state, d!.statusMessage, d!.artifacts.volumeId])).toEqual([
    ['cancelled', `ClientError: disk 4 (${failing}) did not import: the disk is broken`, undefined],
    ['completed', 'Volume vol-0000a102 removed: the instance did not import', undefined],
    // Held by a convert replica: marked for it, which notices and ends it (and cleans up what it wrote).
    ['bundle-decrypted', '', undefined],
    ['failed', 'ClientError: the disk is broken', undefined],
  ]);
  expect(docs[2]!.cancelRequested?.reason).toBe(`Cancelled: disk 4 (${failing}) of the instance did not import`);
  expect(await volumesOf([instance, completed, held, failing])).toEqual([]);
  expect(await Promise.all([instance, completed, failing].map(keysUnder))).toEqual([[], [], []]);
  expect(await keysUnder(held)).toHaveLength(1);

  // A redelivered event of the failed disk runs the ending again: nothing changes.
  const versions = docs.map((d) => d!.version);
  await endInstanceWithDisk(ctx, docs[3]!);
  expect((await Promise.all([instance, completed, held, failing].map((id) => store.get(id)))).map((d) => d!.version)).toEqual(versions);

  // The convert replica notices the request and ends its disk; that ending finds the rest ended.
  await cancelTask(ctx, held);
  expect(await store.get(held)).toMatchObject({ state: 'cancelled', statusMessage: `Cancelled: disk 4 (${failing}) of the instance did not import` });
  expect(await keysUnder(held)).toEqual([]);
});

test('the boot disk failing cancels the further disks; a disk waiting for its upload ends at once', async () => {
  const [instance, pending, converted] = await group('0000a2', [
    { state: 'disk-converted', image: true },
    { state: 'pending-upload' },
    { state: 'boot-checked', image: true },
  ]);
  await failTask(context(), instance, 'ClientError: no operating system was found');
  const docs = await Promise.all([instance, pending, converted].map((id) => store.get(id)));
  expect(docs.map((d) => [d!.state, d!.statusMessage])).toEqual([
    ['failed', 'ClientError: no operating system was found'],
    ['cancelled', `Cancelled: disk 1 (${instance}) of the instance did not import`],
    ['cancelled', `Cancelled: disk 1 (${instance}) of the instance did not import`],
  ]);
  // The failed boot disk's image goes too: the instance will not be retried.
  expect(await Promise.all([instance, converted].map(keysUnder))).toEqual([[], []]);
});

test('the instance ends while a further disk registers, after its volume record was written: the disk completes, then removes its volume', async () => {
  const [instance, registering, failing] = await group('0000a3', [
    { state: 'boot-checked', image: true, volume: 'vol-0000a301' },
    { state: 'boot-checked', image: true },
    { state: 'bundle-decrypted' },
  ]);
  const ctx = context();
  afterPut = async (resource) => {
    if (resource.kind === 'volume' && resource.taskId === registering) await failTask(context(), failing, 'ClientError: late failure');
  };
  await registerStage.handle(registerEvent(registering), ctx);
  const docs = await Promise.all([instance, registering, failing].map((id) => store.get(id)));
  expect(docs.map((d) => d!.state)).toEqual(['cancelled', 'completed', 'failed']);
  expect(docs[1]!.statusMessage).toMatch(/^Volume vol-[0-9a-f]+ removed: the instance did not import$/);
  expect(await volumesOf([instance, registering, failing])).toEqual([]);
  expect(await Promise.all([instance, registering].map(keysUnder))).toEqual([[], []]);
});

test('the instance ends while its own disk registers, before its volume record is written: the register removes the record it wrote late', async () => {
  const [instance, , failing] = await group('0000a4', [
    { state: 'boot-checked', image: true },
    { state: 'bundle-decrypted', held: true },
    { state: 'bundle-decrypted' },
  ]);
  beforePut = async (resource) => {
    if (resource.kind === 'volume' && resource.taskId === instance) await failTask(context(), failing, 'ClientError: early failure');
  };
  await registerStage.handle(registerEvent(instance), context());
  const ended = (await store.get(instance))!;
  expect([ended.state, ended.statusMessage]).toEqual(['cancelled', `ClientError: disk 3 (${failing}) did not import: early failure`]);
  expect(await volumesOf([instance])).toEqual([]);
  expect(await keysUnder(instance)).toEqual([]);
});

test('the instance is cancelled while the last disk writes the instance record: neither the instance nor any volume stays', async () => {
  const [instance, last] = await group('0000a5', [
    { state: 'boot-checked', image: true, volume: 'vol-0000a501' },
    { state: 'boot-checked', image: true },
  ]);
  // As CancelConversionTask ends an instance at that moment: a compare-and-set to cancelled.
  afterPut = async (resource) => {
    if (resource.kind !== 'instance') return;
    const doc = (await store.get(instance))!;
    const at = new Date().toISOString();
    await store.compareAndSet({ ...doc, state: 'cancelled', statusMessage: 'wrong disks', history: [...doc.history, { at, from: doc.state, to: 'cancelled' }], version: doc.version + 1 }, doc.version);
  };
  await registerStage.handle(registerEvent(last), context());
  const doc = (await store.get(instance))!;
  expect(doc.state).toBe('cancelled');
  expect(await store.getResource(doc.request.instance!.instanceId)).toBeUndefined();
  expect(await volumesOf([instance, last])).toEqual([]);
  expect(await Promise.all([instance, last].map(keysUnder))).toEqual([[], []]);
});
