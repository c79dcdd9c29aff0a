/**
 * Issue 11, item 7, the check while writing: a conversion that passed the check before it began
 * (its virtual size fitted) is stopped once what it wrote, with what the account holds and what
 * its other tasks are writing, passes the quota; other accounts' bytes do not count. A real
 * SQLite task store and a real file sink.
 */
import { existsSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { AccountStorageQuota } from '../../../functions/convert/storage-quota';
import { ClientError } from '../../../functions/errors';
import { openTaskStore } from '../../../tasks/open-store';
import type { TaskStore } from '../../../tasks/store';
import type { TaskDocument } from '../../../tasks/task';
import { FileSink } from '../../../toolkit/io/file-sink';

const MiB = 1024 ** 2;
let dir: string;
let store: TaskStore;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'quota-'));
  store = await openTaskStore(`sqlite:${join(dir, 'tasks.db')}`);
  const at = new Date().toISOString();
  const image = (key: string, size: number) => ({ bucket: 'imaging-images', key, size, sha256: '0'.repeat(64) });
  // Alice holds a 40 MiB volume; Bob holds 500 MiB, which must not count against Alice.
  await store.putResource({ id: 'vol-0aaaaaaaaaaaaaaaa', kind: 'volume', accountId: 'alice', taskId: 'import-vol-aaaaaaaa', sizeGiB: 1, image: image('images/a/disk.raw', 40 * MiB), createdAt: at } as any);
  await store.putResource({ id: 'vol-0bbbbbbbbbbbbbbbb', kind: 'volume', accountId: 'bob', taskId: 'import-vol-bbbbbbbb', sizeGiB: 1, image: image('images/b/disk.raw', 500 * MiB), createdAt: at } as any);
  // Another conversion of Alice's is under way: 10 MiB converted so far.
  const converting: TaskDocument = {
    id: 'import-vol-cccccccc', kind: 'import-volume', accountId: 'alice', state: 'converting' as TaskDocument['state'], statusMessage: '', progress: 30, bytesConverted: 10 * MiB,
    request: {} as TaskDocument['request'], artifacts: {}, history: [], createdAt: at, updatedAt: at, expiresAt: at, version: 0,
  };
  await store.create(converting);
});

afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("counts the account's volumes and its other conversions, not other accounts'", async () => {
  const quota = new AccountStorageQuota(store, { id: 'import-vol-dddddddd', accountId: 'alice' }, 64 * MiB);
  expect(await quota.usedByOthers()).toBe(50 * MiB);
  await expect(quota.check(14 * MiB, 'the disk is')).resolves.toBe(50 * MiB);
  await expect(quota.check(15 * MiB, 'the disk is')).rejects.toThrow(ClientError);
});

test('stops a conversion while it writes, once the account would pass the quota; the partial output is the caller\'s to abort', async () => {
  const quota = new AccountStorageQuota(store, { id: 'import-vol-dddddddd', accountId: 'alice' }, 64 * MiB);
  const path = join(dir, 'out.raw');
  const sink = quota.watching(await FileSink.create(path));
  const chunk = Buffer.alloc(MiB, 7);
  let written = 0;
  const error = await (async () => {
    for (let i = 0; i < 40; i++) {
      await sink.write(chunk);
      written += chunk.length;
    }
  })().then(() => undefined, (e) => e);
  expect(error).toBeInstanceOf(ClientError);
  expect(error.message).toMatch(/^the converted image has reached 15 MiB, and this account already uses 50 MiB of the image store: /);
  expect(error.message).toContain("over the account's storage quota of 0.06 GiB (IMAGING_ACCOUNT_STORAGE_QUOTA_GIB)");
  expect(written).toBe(14 * MiB);
  await sink.abort();
  expect(existsSync(path)).toBe(false);
});
