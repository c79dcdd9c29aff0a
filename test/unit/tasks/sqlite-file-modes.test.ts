/** tasks.db holds presigned URLs: it and its -wal/-shm files are private to the service's user (issue 11, item 6). */
import { chmodSync, closeSync, mkdtempSync, openSync, rmSync, statSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { SqliteTaskStore } from '../../../tasks/sqlite-store';
import type { ResourceRecord, VolumeRecord } from '../../../tasks/task';

const modeOf = (path: string) => statSync(path).mode & 0o777;

let dir: string;
let previousUmask: number;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sqlite-modes-'));
  // The usual umask: without our care, files come out 0644 and directories 0755.
  previousUmask = process.umask(0o022);
});
afterAll(() => {
  process.umask(previousUmask);
  rmSync(dir, { recursive: true, force: true });
});

const volume = (id: string): ResourceRecord => ({
  id, kind: 'volume', accountId: '123456789012', taskId: 'import-vol-1234abcd', sizeGiB: 1,
  image: { bucket: 'b', key: 'k' } as VolumeRecord['image'], createdAt: new Date().toISOString(),
});

test('a new database, its directory and its WAL and SHM files are created 0600 / 0700', async () => {
  const path = join(dir, 'fresh', 'data', 'tasks.db');
  const store = SqliteTaskStore.open(path);
  await store.putResource(volume('vol-0123456789abcdef0'));
  expect(modeOf(join(dir, 'fresh', 'data'))).toBe(0o700);
  expect(modeOf(path)).toBe(0o600);
  expect(modeOf(`${path}-wal`)).toBe(0o600);
  expect(modeOf(`${path}-shm`)).toBe(0o600);
  await store.close();
});

test('a database left world-readable by an older version is narrowed when opened', async () => {
  const path = join(dir, 'old.db');
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    closeSync(openSync(file, 'a', 0o644));
    chmodSync(file, 0o644);
  }
  const store = SqliteTaskStore.open(path);
  await store.putResource(volume('vol-0123456789abcdef1'));
  await expect(store.getResource('vol-0123456789abcdef1')).resolves.toMatchObject({ kind: 'volume' });
  for (const file of [path, `${path}-wal`, `${path}-shm`]) expect([file, modeOf(file)]).toEqual([file, 0o600]);
  await store.close();
});
