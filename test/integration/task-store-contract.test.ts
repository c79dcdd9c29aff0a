import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { randomBytes } from 'crypto';
import { MongoClient } from 'mongodb';
import type { TaskStore } from '../../tasks/store';
import { TaskExistsError } from '../../tasks/store';
import type { ResourceRecord, TaskDocument, TaskState } from '../../tasks/task';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import { MongoTaskStore } from '../../tasks/mongo-store';
import { advanceTask, IllegalTransitionError, updateTask } from '../../tasks/state-machine';
import { startMongoServer, type RunningMongoServer } from '../helpers/mongo-server';
import { AccountConflictError, newKeyFor, type AccountRecord } from '../../tasks/accounts';

/**
 * One behaviour, every engine: each TaskStore implementation runs the same suite.
 * Each test gets a fresh, empty store so assertions can be on exact sets.
 */
interface StoreFactory {
  name: string;
  /** Whether what is written survives closing the store (an in-memory database keeps nothing). */
  persistent: boolean;
  beforeAll(): Promise<void>;
  afterAll(): Promise<void>;
  /** A fresh, empty store; `reopen` opens the same data again (undefined when nothing persists). */
  open(): Promise<{ store: TaskStore; reopen?: () => Promise<TaskStore>; dispose(): Promise<void> }>;
}

function sqliteFileFactory(): StoreFactory {
  let dir = '';
  return {
    name: 'sqlite file',
    persistent: true,
    async beforeAll() {
      dir = mkdtempSync(join(tmpdir(), 'task-store-'));
    },
    async afterAll() {
      rmSync(dir, { recursive: true, force: true });
    },
    async open() {
      const path = join(dir, `${randomBytes(4).toString('hex')}.db`);
      const store = SqliteTaskStore.open(path);
      const opened: TaskStore[] = [store];
      return {
        store,
        reopen: async () => {
          const again = SqliteTaskStore.open(path);
          opened.push(again);
          return again;
        },
        dispose: async () => {
          for (const s of opened) await s.close();
        },
      };
    },
  };
}

function sqliteMemoryFactory(): StoreFactory {
  return {
    name: 'sqlite :memory:',
    persistent: false,
    async beforeAll() {},
    async afterAll() {},
    async open() {
      const store = SqliteTaskStore.open(':memory:');
      return { store, dispose: () => store.close() };
    },
  };
}

/** A MongoDB server (started jongodb, or an external one) with one database per test. */
function mongoFactory(name: string, server: () => Promise<RunningMongoServer>, canDropDatabase: boolean): StoreFactory {
  let running: RunningMongoServer | undefined;
  const runId = `${process.pid}_${randomBytes(3).toString('hex')}`;
  let n = 0;
  return {
    name,
    persistent: true,
    async beforeAll() {
      running = await server();
    },
    async afterAll() {
      await running?.stop();
    },
    async open() {
      const uri = running!.uri;
      const dbName = `imaging_test_${runId}_${n++}`;
      const store = await MongoTaskStore.connect(uri, dbName);
      const opened: TaskStore[] = [store];
      return {
        store,
        reopen: async () => {
          const again = await MongoTaskStore.connect(uri, dbName);
          opened.push(again);
          return again;
        },
        dispose: async () => {
          for (const s of opened) await s.close();
          if (canDropDatabase) {
            const client = await MongoClient.connect(uri);
            await client.db(dbName).dropDatabase();
            await client.close();
          }
        },
      };
    },
  };
}

const factories: StoreFactory[] = [
  sqliteFileFactory(),
  sqliteMemoryFactory(),
  // jongodb has no dropDatabase; its data disappears with the process.
  mongoFactory('jongodb', () => startMongoServer(), false),
];

/**
 * A real MongoDB server runs the same contract when MONGODB_URI names one (each test uses its
 * own database, dropped afterwards); without it the suite is reported as skipped, with the reason.
 */
const REAL_MONGODB_URI = process.env.MONGODB_URI;
const realMongoFactory = mongoFactory(
  REAL_MONGODB_URI ? 'a real MongoDB (MONGODB_URI)' : 'a real MongoDB (skipped: set MONGODB_URI=mongodb://host:27017 to run against one)',
  async () => ({ uri: REAL_MONGODB_URI!, stop: async () => {} }),
  true,
);

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();

function taskFixture(id: string, overrides: Partial<TaskDocument> = {}): TaskDocument {
  return {
    id,
    kind: 'import-volume',
    accountId: '111122223333',
    state: 'pending-upload',
    statusMessage: 'waiting for upload',
    progress: 0,
    bytesConverted: 0,
    request: {
      format: 'VMDK',
      bytes: 5_368_709_120,
      manifestUrl: 'http://s3.local:9000/bucket/disk.vmdk/manifest.xml?X-Amz-Signature=abc',
      volumeSizeGiB: 8,
    },
    artifacts: {},
    history: [{ at: at(0), from: null, to: 'pending-upload' }],
    createdAt: at(0),
    updatedAt: at(0),
    expiresAt: at(60 * 24 * 7),
    version: 1,
    ...overrides,
  };
}

/** Every optional field set, nested arrays of objects included. */
function fullyPopulatedTask(id: string): TaskDocument {
  return taskFixture(id, {
    kind: 'import-instance',
    state: 'validated',
    statusMessage: 'validated: gpt, 8 GiB',
    progress: 87.5,
    bytesConverted: 8_589_934_592,
    request: {
      format: 'VHD',
      bytes: 123_456_789_012,
      manifestUrl: 'https://objects.example/b/k/manifest.xml',
      volumeSizeGiB: 120,
      availabilityZone: 'zone-a',
      description: 'web server "blue" — ünïcode',
    },
    artifacts: {
      manifest: {
        version: '2010-11-15',
        fileFormat: 'VHD',
        size: 123_456_789_012,
        volumeSizeGiB: 120,
        parts: [
          { index: 0, start: 0, end: 10_485_759, key: 'k/part0', headUrl: 'h0', getUrl: 'g0', deleteUrl: 'd0' },
          { index: 1, start: 10_485_760, end: 123_456_789_011, key: 'k/part1', headUrl: 'h1', getUrl: 'g1' },
        ],
        selfDestructUrl: 'https://objects.example/b/k/manifest.xml?delete',
      },
      source: { format: 'VHD', size: 123_456_789_012, parts: [{ getUrl: 'g0', size: 10_485_760 }, { getUrl: 'g1', size: 1 }] },
      image: { bucket: 'images', key: 'import-i-0a1b2c3d/disk.raw', size: 128_849_018_880, sha256: 'ab'.repeat(32) },
      validation: { sizeBytes: 128_849_018_880, partitionTable: 'gpt' },
      volumeId: 'vol-0123456789abcdef0',
    },
    history: [
      { at: at(0), from: null, to: 'pending-upload' },
      { at: at(1), from: 'pending-upload', to: 'manifest-received', message: 'manifest has 2 parts' },
      { at: at(2), from: 'manifest-received', to: 'bundle-decrypted' },
    ],
    cancelRequested: { at: at(3), reason: 'user asked' },
    outbox: { id: `${id}/validated`, type: 'imaging.disk.validated', source: 'validate', data: { taskId: id, accountId: '111122223333', nested: { list: [1, 'two'] } } },
    lease: { holder: 'host-a/123/abcdef', stage: 'register', epoch: 3, expiresAt: at(4) },
    wakeAt: at(5),
    uploadChecks: 4,
    version: 7,
  });
}

describe.each(factories)('TaskStore contract: $name', (factory) => contract(factory));
(REAL_MONGODB_URI ? describe : describe.skip)(`TaskStore contract: ${realMongoFactory.name}`, () => contract(realMongoFactory));

function contract(factory: StoreFactory): void {
  let store: TaskStore;
  let reopen: (() => Promise<TaskStore>) | undefined;
  let dispose: () => Promise<void>;

  beforeAll(() => factory.beforeAll(), 60_000);
  afterAll(() => factory.afterAll());
  beforeEach(async () => {
    ({ store, reopen, dispose } = await factory.open());
  });
  afterEach(() => dispose());

  test('create then get returns every field as written', async () => {
    const task = fullyPopulatedTask('import-i-0a1b2c3d');
    await store.create(task);
    expect(await store.get(task.id)).toEqual(task);
    expect(await store.get('import-vol-ffffffff')).toBeUndefined();
  });

  test('create rejects a taken id with TaskExistsError and keeps the first document', async () => {
    const first = taskFixture('import-vol-00000001', { statusMessage: 'first' });
    await store.create(first);
    await expect(store.create({ ...first, statusMessage: 'second' })).rejects.toBeInstanceOf(TaskExistsError);
    expect(await store.get(first.id)).toEqual(first);
  });

  test('list returns one account, newest first, honouring ids and kinds filters', async () => {
    const mine = '111122223333';
    const other = '999988887777';
    await store.create(taskFixture('import-vol-aaaaaaa1', { accountId: mine, createdAt: at(1) }));
    await store.create(taskFixture('import-vol-aaaaaaa3', { accountId: mine, createdAt: at(3) }));
    await store.create(taskFixture('import-i-aaaaaaa2', { accountId: mine, kind: 'import-instance', createdAt: at(2) }));
    await store.create(taskFixture('import-vol-bbbbbbb9', { accountId: other, createdAt: at(9) }));

    const ids = (docs: TaskDocument[]) => docs.map((d) => d.id);
    expect(ids(await store.list({ accountId: mine }))).toEqual(['import-vol-aaaaaaa3', 'import-i-aaaaaaa2', 'import-vol-aaaaaaa1']);
    expect(ids(await store.list({ accountId: other }))).toEqual(['import-vol-bbbbbbb9']);
    expect(await store.list({ accountId: 'nobody' })).toEqual([]);
    // Another account's task id never leaks, even when asked for by id.
    expect(ids(await store.list({ accountId: mine, ids: ['import-vol-aaaaaaa1', 'import-vol-bbbbbbb9'] }))).toEqual([
      'import-vol-aaaaaaa1',
    ]);
    expect(await store.list({ accountId: mine, ids: [] })).toEqual([]);
    expect(ids(await store.list({ accountId: mine, kinds: ['import-instance'] }))).toEqual(['import-i-aaaaaaa2']);
    const listed = await store.list({ accountId: mine, ids: ['import-i-aaaaaaa2'] });
    expect(listed[0]).toEqual(await store.get('import-i-aaaaaaa2'));
  });

  test('compareAndSet writes once for a version; a stale version writes nothing', async () => {
    const task = taskFixture('import-vol-0000cas1', { cancelRequested: { at: at(5) } });
    await store.create(task);

    const { cancelRequested, ...withoutCancel } = task;
    expect(cancelRequested).toBeDefined();
    // The store, not the caller, sets the new version.
    const first: TaskDocument = { ...withoutCancel, statusMessage: 'first writer', version: 999 };
    expect(await store.compareAndSet(first, 1)).toBe(true);
    const stored = await store.get(task.id);
    expect(stored).toEqual({ ...first, version: 2 });
    // A field the writer dropped is gone from the stored document too.
    expect(stored).not.toHaveProperty('cancelRequested');

    expect(await store.compareAndSet({ ...task, statusMessage: 'stale writer' }, 1)).toBe(false);
    expect(await store.get(task.id)).toEqual({ ...first, version: 2 });

    expect(await store.compareAndSet({ ...task, id: 'import-vol-nosuchid' }, 1)).toBe(false);
    expect(await store.get('import-vol-nosuchid')).toBeUndefined();
  });

  test('20 concurrent updateTask callers lose no increment', async () => {
    const task = taskFixture('import-vol-0000c0c0');
    await store.create(task);
    // Distinct amounts, so a lost update cannot be hidden by another caller's equal increment.
    const amounts = Array.from({ length: 20 }, (_, i) => 1000 + i);
    await Promise.all(
      amounts.map((amount) =>
        updateTask(store, task.id, (doc) => ({ ...doc, bytesConverted: doc.bytesConverted + amount })),
      ),
    );
    const final = await store.get(task.id);
    expect(final!.bytesConverted).toBe(amounts.reduce((a, b) => a + b, 0));
    expect(final!.version).toBe(task.version + amounts.length);
  });

  test('advanceTask moves only from allowed states and records history', async () => {
    const task = taskFixture('import-vol-000adv01');
    await store.create(task);

    const moved = await advanceTask(
      store,
      task.id,
      ['pending-upload'],
      'manifest-received',
      () => ({ progress: 10 }),
      'manifest parsed',
    );
    expect(moved).toMatchObject({ state: 'manifest-received', progress: 10, statusMessage: 'manifest parsed', version: 2 });
    const stored = await store.get(task.id);
    expect(stored).toEqual(moved);
    expect(stored!.history).toEqual([
      task.history[0],
      { at: expect.any(String), from: 'pending-upload', to: 'manifest-received', message: 'manifest parsed' },
    ]);

    // A redelivered event for a step already done: no move, no write.
    expect(await advanceTask(store, task.id, ['pending-upload'], 'manifest-received')).toBeUndefined();
    expect(await store.get(task.id)).toEqual(stored);

    // Allowed "from" but a transition the state machine forbids.
    await expect(advanceTask(store, task.id, ['manifest-received'], 'completed')).rejects.toBeInstanceOf(
      IllegalTransitionError,
    );
    expect(await store.get(task.id)).toEqual(stored);

    expect(await advanceTask(store, 'import-vol-nosuchid', ['pending-upload'], 'manifest-received')).toBeUndefined();
  });

  test('listExpired returns non-terminal tasks past expiry, across accounts', async () => {
    const now = new Date(at(100));
    const make = (id: string, state: TaskState, expiresAt: string, accountId = '111122223333') =>
      store.create(taskFixture(id, { state, expiresAt, accountId }));
    await make('import-vol-e0000001', 'pending-upload', at(99));
    await make('import-vol-e0000002', 'cancelling', at(50), '999988887777');
    await make('import-vol-e0000003', 'disk-converted', at(10));
    await make('import-vol-e0000004', 'completed', at(10));
    await make('import-vol-e0000005', 'cancelled', at(10));
    await make('import-vol-e0000006', 'failed', at(10));
    await make('import-vol-e0000007', 'pending-upload', at(100)); // exactly now: not yet expired
    await make('import-vol-e0000008', 'pending-upload', at(101));

    const expired = await store.listExpired(now);
    expect(expired.map((d) => d.id).sort()).toEqual(['import-vol-e0000001', 'import-vol-e0000002', 'import-vol-e0000003']);
    expect(expired.find((d) => d.id === 'import-vol-e0000002')).toEqual(await store.get('import-vol-e0000002'));
    expect(await store.listExpired(new Date(at(0)))).toEqual([]);
  });

  test('countByState counts tasks per state across accounts', async () => {
    expect(await store.countByState()).toEqual({});
    await store.create(taskFixture('import-vol-c0000001', { state: 'pending-upload' }));
    await store.create(taskFixture('import-vol-c0000002', { state: 'pending-upload', accountId: '999988887777' }));
    await store.create(taskFixture('import-vol-c0000003', { state: 'failed' }));
    expect(await store.countByState()).toEqual({ 'pending-upload': 2, failed: 1 });
  });

  test('listUnfinished returns every non-terminal task across accounts, oldest first, up to the limit', async () => {
    const make = (id: string, state: TaskState, createdAt: string, accountId = '111122223333') =>
      store.create(taskFixture(id, { state, createdAt, accountId }));
    await make('import-vol-u0000003', 'disk-converted', at(3));
    await make('import-vol-u0000001', 'pending-upload', at(1), '999988887777');
    await make('import-vol-u0000002', 'cancelling', at(2));
    await make('import-vol-u0000004', 'completed', at(0));
    await make('import-vol-u0000005', 'cancelled', at(0));
    await make('import-vol-u0000006', 'failed', at(0));
    await make('import-vol-u0000007', 'validated', at(7));

    const ids = (docs: TaskDocument[]) => docs.map((d) => d.id);
    expect(ids(await store.listUnfinished(100))).toEqual(['import-vol-u0000001', 'import-vol-u0000002', 'import-vol-u0000003', 'import-vol-u0000007']);
    expect(ids(await store.listUnfinished(2))).toEqual(['import-vol-u0000001', 'import-vol-u0000002']);
    const [first] = await store.listUnfinished(1);
    expect(first).toEqual(await store.get('import-vol-u0000001'));
  });

  test('putResource then getResource; a second put replaces the record', async () => {
    const volume: ResourceRecord = {
      id: 'vol-0123456789abcdef0',
      kind: 'volume',
      accountId: '111122223333',
      taskId: 'import-vol-0a1b2c3d',
      sizeGiB: 8,
      image: { bucket: 'images', key: 'import-vol-0a1b2c3d/disk.raw', size: 8_589_934_592, sha256: 'cd'.repeat(32) },
      availabilityZone: 'zone-a',
      createdAt: at(5),
    };
    await store.putResource(volume);
    expect(await store.getResource(volume.id)).toEqual(volume);
    expect(await store.getResource('vol-ffffffffffffffff0')).toBeUndefined();

    const { availabilityZone, ...withoutZone } = volume;
    expect(availabilityZone).toBeDefined();
    const resized: ResourceRecord = { ...withoutZone, sizeGiB: 16 };
    await store.putResource(resized);
    expect(await store.getResource(volume.id)).toEqual(resized);
    // Resources and tasks are kept apart.
    expect(await store.get(volume.id)).toBeUndefined();
  });

  test('close resolves', async () => {
    await store.create(fullyPopulatedTask('import-i-0c10se01'));
    await expect(store.close()).resolves.toBeUndefined();
  });

  (factory.persistent ? test : test.skip)(
    `what was written is there after reopening${factory.persistent ? '' : ' (skipped: an in-memory database keeps nothing once closed)'}`,
    async () => {
      const task = fullyPopulatedTask('import-i-0c10se00');
      await store.create(task);
      await updateTask(store, task.id, (doc) => ({ ...doc, progress: 99 }));
      await store.close();
      expect(reopen).toBeDefined();
      const again = await reopen!();
      expect(await again.get(task.id)).toEqual({ ...task, progress: 99, version: task.version + 1 });
    },
  );

  test('listResources: by kind, by account (or all), by ids, oldest first; deleteResource removes one', async () => {
    const snap = (id: string, accountId: string, minute: number): ResourceRecord => ({
      id, kind: 'snapshot', accountId, taskId: 'import-snap-0a1b2c3d4e5f60718', sizeGiB: 1,
      image: { bucket: 'images', key: `${id}/disk.raw`, size: 1, sha256: 'ef'.repeat(32) }, createdAt: at(minute),
    });
    const a1 = snap('snap-0000000000000000a', '111122223333', 2);
    const a2 = snap('snap-0000000000000000b', '111122223333', 1);
    const b1 = snap('snap-0000000000000000c', '444455556666', 3);
    const image: ResourceRecord = {
      id: 'ami-0000000000000000a', kind: 'image', accountId: '111122223333', taskId: 't', name: 'n', architecture: 'x86_64',
      rootDeviceName: '/dev/sda1', snapshotIds: [a1.id], sizeGiB: 1, tags: [{ key: 'k', value: 'v' }], createdAt: at(4),
    };
    for (const r of [a1, a2, b1, image]) await store.putResource(r);
    expect((await store.listResources({ kind: 'snapshot', accountId: '111122223333' })).map((r) => r.id)).toEqual([a2.id, a1.id]);
    expect((await store.listResources({ kind: 'snapshot' })).map((r) => r.id)).toEqual([a2.id, a1.id, b1.id]);
    expect(await store.listResources({ kind: 'snapshot', accountId: '444455556666', ids: [a1.id, b1.id] })).toEqual([b1]);
    expect(await store.listResources({ kind: 'image', accountId: '111122223333' })).toEqual([image]);
    expect(await store.listResources({ kind: 'volume', accountId: '111122223333' })).toEqual([]);
    expect(await store.listResources({ kind: 'snapshot', ids: [] })).toEqual([]);
    expect(await store.deleteResource(a1.id)).toBe(true);
    expect(await store.deleteResource(a1.id)).toBe(false);
    expect(await store.getResource(a1.id)).toBeUndefined();
    expect((await store.listResources({ kind: 'snapshot' })).map((r) => r.id)).toEqual([a2.id, b1.id]);
  });

  test('list without accountId lists every account; kinds filter', async () => {
    await store.create(taskFixture('import-vol-0000000a', { accountId: '111122223333', createdAt: at(1) }));
    await store.create(taskFixture('import-vol-0000000b', { accountId: '444455556666', createdAt: at(2) }));
    await store.create(taskFixture('import-ami-0000000c', { accountId: '444455556666', kind: 'import-image', createdAt: at(3) }));
    expect((await store.list({})).map((t) => t.id)).toEqual(['import-ami-0000000c', 'import-vol-0000000b', 'import-vol-0000000a']);
    expect((await store.list({ kinds: ['import-image'] })).map((t) => t.id)).toEqual(['import-ami-0000000c']);
    expect((await store.list({ accountId: '111122223333', kinds: ['import-image'] })).map((t) => t.id)).toEqual([]);
  });

  test('claimClientToken: the first claim wins, per account', async () => {
    expect(await store.claimClientToken('111122223333', 'tok', { taskId: 'import-ami-1', fingerprint: 'f1' })).toBeUndefined();
    expect(await store.claimClientToken('111122223333', 'tok', { taskId: 'import-ami-2', fingerprint: 'f2' })).toEqual({ taskId: 'import-ami-1', fingerprint: 'f1' });
    expect(await store.claimClientToken('444455556666', 'tok', { taskId: 'import-ami-3', fingerprint: 'f3' })).toBeUndefined();
    const racing = await Promise.all([1, 2, 3, 4].map((n) => store.claimClientToken('111122223333', 'race', { taskId: `t${n}`, fingerprint: 'f' })));
    expect(racing.filter((r) => r === undefined)).toHaveLength(1);
    const winner = racing.find((r) => r !== undefined)!.taskId;
    expect(racing.every((r) => r === undefined || r.taskId === winner)).toBe(true);
  });

  test('accounts and keys: create, find, list, conflicts, delete with their keys', async () => {
    const alice: AccountRecord = { accountId: '111122223333', name: 'alice', admin: true, createdAt: at(1) };
    const bob: AccountRecord = { accountId: '444455556666', name: 'bob', admin: false, createdAt: at(2) };
    await store.createAccount(alice);
    await store.createAccount(bob);
    await expect(store.createAccount({ ...bob, accountId: '777788889999' })).rejects.toBeInstanceOf(AccountConflictError);
    await expect(store.createAccount({ ...bob, name: 'carol' })).rejects.toBeInstanceOf(AccountConflictError);
    expect(await store.getAccount(alice.accountId)).toEqual(alice);
    expect(await store.findAccountByName('bob')).toEqual(bob);
    expect(await store.findAccountByName('carol')).toBeUndefined();
    expect(await store.listAccounts()).toEqual([alice, bob]);

    const k1 = newKeyFor(bob.accountId, new Date(T0));
    const k2 = newKeyFor(bob.accountId, new Date(T0 + 1000));
    const ka = newKeyFor(alice.accountId, new Date(T0));
    for (const k of [k1, k2, ka]) await store.createKey(k);
    await expect(store.createKey({ ...k1, accountId: alice.accountId })).rejects.toBeInstanceOf(AccountConflictError);
    expect(k1.accessKeyId).toMatch(/^AKIA[0-9A-F]{16}$/);
    expect(k1.secretAccessKey).toMatch(/^[A-Za-z0-9]{40}$/);
    expect(await store.getKey(k1.accessKeyId)).toEqual(k1);
    expect(await store.listKeys(bob.accountId)).toEqual([k1, k2]);
    expect(await store.deleteKey(k1.accessKeyId)).toBe(true);
    expect(await store.deleteKey(k1.accessKeyId)).toBe(false);
    expect(await store.listKeys(bob.accountId)).toEqual([k2]);

    expect(await store.deleteAccount(bob.accountId)).toBe(true);
    expect(await store.deleteAccount(bob.accountId)).toBe(false);
    expect(await store.getKey(k2.accessKeyId)).toBeUndefined();
    expect(await store.getKey(ka.accessKeyId)).toEqual(ka);
    expect(await store.listAccounts()).toEqual([alice]);
  });
}
