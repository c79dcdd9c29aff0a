import { mkdtempSync, rmSync, existsSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { mongoDatabaseNamedIn, openTaskStore } from '../../../tasks/open-store';
import { SqliteTaskStore } from '../../../tasks/sqlite-store';
import { MongoTaskStore } from '../../../tasks/mongo-store';
import { startMongoServer } from '../../helpers/mongo-server';

describe('mongoDatabaseNamedIn', () => {
  test.each([
    ['mongodb://h:27017', undefined],
    ['mongodb://h:27017/', undefined],
    ['mongodb://h:27017/imaging', 'imaging'],
    ['mongodb://u:p%2Fw@h1:1,h2:2/tasks?replicaSet=rs0', 'tasks'],
    ['mongodb+srv://u:p@cluster.example/prod?retryWrites=true', 'prod'],
    ['mongodb://h?tls=true', undefined],
  ])('%s → %s', (url, name) => {
    expect(mongoDatabaseNamedIn(url)).toBe(name);
  });
});

describe('openTaskStore', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'open-store-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test.each([
    ['sqlite:', 'a.db'],
    ['sqlite://', 'b.db'],
    ['', 'c.db'],
    ['sqlite:', 'not/yet/there/d.db'],
  ])('"%sPATH" opens a SQLite file at PATH', async (prefix, file) => {
    const path = join(dir, file);
    const store = await openTaskStore(`${prefix}${path}`);
    expect(store).toBeInstanceOf(SqliteTaskStore);
    await store.close();
    expect(existsSync(path)).toBe(true);
  });

  test('sqlite::memory: opens an in-memory store', async () => {
    const store = await openTaskStore('sqlite::memory:');
    expect(store).toBeInstanceOf(SqliteTaskStore);
    expect(await store.get('import-vol-00000000')).toBeUndefined();
    await store.close();
    expect(existsSync(':memory:')).toBe(false);
  });

  test('refuses an unknown scheme and an empty url', async () => {
    await expect(openTaskStore('postgres://db/imaging')).rejects.toThrow(/unsupported task store url/);
    await expect(openTaskStore('')).rejects.toThrow(/empty/);
    await expect(openTaskStore('sqlite:')).rejects.toThrow(/names no file/);
  });

  test('mongodb:// opens a MongoDB store', async () => {
    const server = await startMongoServer();
    try {
      const store = await openTaskStore(`${server.uri}/open_store_test`);
      expect(store).toBeInstanceOf(MongoTaskStore);
      const id = 'import-vol-0000db01';
      await store.create({
        id, kind: 'import-volume', accountId: '111122223333', state: 'pending-upload', statusMessage: '',
        progress: 0, bytesConverted: 0, artifacts: {}, history: [], version: 1,
        request: { format: 'RAW', bytes: 1, manifestUrl: 'http://s3/m', volumeSizeGiB: 1 },
        createdAt: '2026-01-01T00:00:00.000Z', updatedAt: '2026-01-01T00:00:00.000Z', expiresAt: '2026-01-08T00:00:00.000Z',
      });
      await store.close();
      // The database named in the url is the one written, not the default.
      const named = await MongoTaskStore.connect(server.uri, 'open_store_test');
      const fallback = await MongoTaskStore.connect(server.uri, 'imaging');
      expect(await named.get(id)).toBeDefined();
      expect(await fallback.get(id)).toBeUndefined();
      await named.close();
      await fallback.close();
    } finally {
      await server.stop();
    }
  });
});
