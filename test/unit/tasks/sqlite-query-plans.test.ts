/**
 * The describe actions' task listings, as the SQLite store runs them: every one is a search of an
 * index, never a scan of the table or of an account's whole range, so a describe costs the same
 * with 3,000 tasks or 100,000 (bench:api-load measures it). SQLite keeps no statistics unless
 * ANALYZE runs, which the store never does, so these are the plans every database gets.
 */
import { SqliteTaskStore } from '../../../tasks/sqlite-store';
import type { TaskQuery } from '../../../tasks/store';
import { CONVERSION_TASK_KINDS, type TaskDocument, type TaskKind } from '../../../tasks/task';

const ACCOUNTS = ['111122223333', '444455556666'];
const KINDS: TaskKind[] = ['import-volume', 'import-instance', 'import-image', 'import-snapshot'];

let store: SqliteTaskStore;
/** The stored tasks' ids, oldest first; the tables below name them before the store is filled. */
const ids = Array.from({ length: 400 }, (_, i) => `import-vol-${i.toString(16).padStart(8, '0')}`);

beforeAll(async () => {
  store = SqliteTaskStore.open(':memory:');
  const start = Date.parse('2026-12-01T00:00:00.000Z');
  for (let i = 0; i < 400; i++) {
    const at = new Date(start + i * 1000).toISOString();
    const id = ids[i];
    const task: TaskDocument = {
      id, kind: KINDS[i % KINDS.length], accountId: ACCOUNTS[i % 2], state: 'completed', statusMessage: '', progress: 100, bytesConverted: 0,
      request: { format: 'RAW', bytes: 1, manifestUrl: '', volumeSizeGiB: 1 }, artifacts: {}, history: [], createdAt: at, updatedAt: at, expiresAt: at, version: 1,
    };
    await store.create(task);
  }
});
afterAll(() => store.close());

/** The plan of the statement `query` prepares (the store caches statements by their text). */
async function planOf(query: TaskQuery): Promise<string[]> {
  const before = new Set(store.preparedQueryPlans().map((p) => p.sql));
  const listed = await store.list(query);
  expect(Array.isArray(listed)).toBe(true);
  const added = store.preparedQueryPlans().filter((p) => !before.has(p.sql));
  expect(added).toHaveLength(1);
  return added[0].plan;
}

const caller = ACCOUNTS[0];
const PRIMARY_KEY = /^SEARCH tasks USING INDEX sqlite_autoindex_tasks_1 \(id=\?\)$/;

test.each([
  ['DescribeConversionTasks, 20 ids', { accountId: caller, kinds: CONVERSION_TASK_KINDS, ids: ids.slice(0, 20) }],
  ['DescribeConversionTasks, one id', { accountId: caller, kinds: CONVERSION_TASK_KINDS, ids: ids.slice(0, 1) }],
  ['the volume tasks of instance tasks', { accountId: caller, ids: ids.slice(20, 23) }],
  ['DescribeImportImageTasks, ids, one page', { accountId: caller, kinds: ['import-image'] as TaskKind[], ids: ids.slice(0, 5), limit: 3, before: { createdAt: '2026-12-01T00:05:00.000Z', id: ids[300] } }],
  ['an administrator naming ids', { kinds: CONVERSION_TASK_KINDS, ids: ids.slice(0, 20) }],
])('%s: found through the primary key, each id once', async (_name, query: TaskQuery) => {
  const plan = await planOf(query);
  expect(plan[0]).toMatch(PRIMARY_KEY);
  // What may follow is sorting the few rows found; nothing else is read.
  expect(plan.slice(1).every((step) => /^USE TEMP B-TREE FOR ORDER BY$/.test(step))).toBe(true);
});

test('a page of one kind: the account-and-kind index in order, no sorting', async () => {
  expect(await planOf({ accountId: caller, kinds: ['import-image'], limit: 21 })).toEqual([
    'SEARCH tasks USING INDEX tasks_account_kind_created (account_id=? AND kind=?)',
  ]);
});

test('the page after a NextToken: one range of that index, starting at the cursor', async () => {
  expect(await planOf({ accountId: caller, kinds: ['import-snapshot'], limit: 21, before: { createdAt: '2026-12-01T00:05:00.000Z', id: ids[300] } })).toEqual([
    'SEARCH tasks USING INDEX tasks_account_kind_created (account_id=? AND kind=? AND (created_at,id)<(?,?))',
  ]);
});

test('the lists answer what the plans promise', async () => {
  const named = ids.slice(0, 20);
  const found = await store.list({ accountId: caller, kinds: CONVERSION_TASK_KINDS, ids: named });
  const expected = named.filter((_, i) => i % 2 === 0 && CONVERSION_TASK_KINDS.includes(KINDS[i % KINDS.length])).reverse();
  expect(found.map((t) => t.id)).toEqual(expected);
  const cursor = { createdAt: new Date(Date.parse('2026-12-01T00:00:00.000Z') + 300 * 1000).toISOString(), id: ids[300] };
  const page = await store.list({ accountId: caller, kinds: ['import-image'], limit: 3, before: cursor });
  expect(page.map((t) => t.id)).toEqual([ids[298], ids[294], ids[290]]);
});
