import { applyFilters, matchesAny, page, pageOfTasks, parseFilters, parseTags, parseTagSpecifications } from '../../../gateway/actions/describe-common';
import { SqliteTaskStore } from '../../../tasks/sqlite-store';
import { Ec2Error } from '../../../gateway/errors';
import { QueryParams } from '../../../gateway/query-request';

const params = (o: Record<string, string>) => new QueryParams(Object.entries(o));
const codeOf = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    return (err as Ec2Error).code;
  }
  return 'no error';
};

test('filters: names checked, values gathered, wildcards * ? and \\ escapes', () => {
  const filters = parseFilters(params({ 'Filters.1.Name': 'task-state', 'Filters.1.Value.1': 'active', 'Filters.1.Value.2': 'dele*', 'Filters.2.Name': 'tag:env', 'Filters.2.Value.1': 'pr?d' }), 'Filters', ['task-state']);
  expect([...filters]).toEqual([['task-state', ['active', 'dele*']], ['tag:env', ['pr?d']]]);
  expect(codeOf(() => parseFilters(params({ 'Filter.1.Name': 'colour', 'Filter.1.Value.1': 'x' }), 'Filter', ['state']))).toBe('InvalidParameterValue');
  expect(codeOf(() => parseFilters(params({ 'Filter.1.Value.1': 'x' }), 'Filter', ['state']))).toBe('MissingParameter');
  expect(matchesAny(['a*c'], ['abbbc'])).toBe(true);
  expect(matchesAny(['a?c'], ['abbc'])).toBe(false);
  expect(matchesAny(['a\\*c'], ['abc'])).toBe(false);
  expect(matchesAny(['a\\*c'], ['a*c'])).toBe(true);
  expect(matchesAny(['a.c'], ['abc'])).toBe(false);
  const items = [
    { id: 1, state: 'active', tags: [{ key: 'env', value: 'prod' }] },
    { id: 2, state: 'deleted', tags: [{ key: 'env', value: 'dev' }] },
    { id: 3, state: 'deleting' },
  ];
  expect(applyFilters(items, filters, (i) => [i.state]).map((i) => i.id)).toEqual([1]);
  expect(applyFilters(items, new Map([['task-state', ['dele*']]]), (i) => [i.state]).map((i) => i.id)).toEqual([2, 3]);
  expect(applyFilters(items, new Map([['tag-key', ['env']]]), () => []).map((i) => i.id)).toEqual([1, 2]);
});

test('paging: pages in order, tokens opaque and bound to their query', () => {
  const items = Array.from({ length: 5 }, (_, i) => i);
  const p1 = page(items, { maxResults: 2 }, { q: 1 });
  expect(p1.items).toEqual([0, 1]);
  const p2 = page(items, { maxResults: 2, nextToken: p1.nextToken }, { q: 1 });
  const p3 = page(items, { maxResults: 2, nextToken: p2.nextToken }, { q: 1 });
  expect([...p2.items, ...p3.items]).toEqual([2, 3, 4]);
  expect(p3.nextToken).toBeUndefined();
  // Opaque: not the bare offset a client could edit.
  expect(p1.nextToken).not.toBe('2');
  expect(() => page(items, { maxResults: 2, nextToken: p1.nextToken }, { q: 2 })).toThrow(expect.objectContaining({ code: 'InvalidPaginationToken' }));
  expect(() => page(items, { nextToken: 'garbage' }, { q: 1 })).toThrow(expect.objectContaining({ code: 'InvalidPaginationToken' }));
  expect(page(items, {}, { q: 1 })).toEqual({ items });
});

test('tags and tag specifications: keys required, aws: refused, duplicates and limits', () => {
  expect(parseTags(params({ 'Tag.1.Key': 'a', 'Tag.1.Value': '1', 'Tag.2.Key': 'b' }), 'Tag')).toEqual([{ key: 'a', value: '1' }, { key: 'b', value: '' }]);
  expect(codeOf(() => parseTags(params({ 'Tag.1.Value': '1' }), 'Tag'))).toBe('MissingParameter');
  expect(codeOf(() => parseTags(params({ 'Tag.1.Key': 'aws:x' }), 'Tag'))).toBe('InvalidParameterValue');
  expect(codeOf(() => parseTags(params({ 'Tag.1.Key': 'a', 'Tag.2.Key': 'a' }), 'Tag'))).toBe('InvalidParameterValue');
  const many: Record<string, string> = {};
  for (let i = 1; i <= 51; i++) many[`Tag.${i}.Key`] = `k${i}`;
  expect(codeOf(() => parseTags(params(many), 'Tag'))).toBe('TagLimitExceeded');
  const specs = parseTagSpecifications(params({ 'TagSpecification.1.ResourceType': 'image', 'TagSpecification.1.Tag.1.Key': 'k', 'TagSpecification.1.Tag.1.Value': 'v' }), ['image']);
  expect([...specs]).toEqual([['image', [{ key: 'k', value: 'v' }]]]);
  expect(codeOf(() => parseTagSpecifications(params({ 'TagSpecification.1.ResourceType': 'vpc' }), ['image']))).toBe('InvalidParameterValue');
});

describe('pageOfTasks: keyset pages read from the store', () => {
  const T0 = Date.parse('2026-02-01T00:00:00Z');
  const task = (n: number, state: 'completed' | 'failed', accountId = '111111111111') => ({
    id: `import-ami-${String(n).padStart(17, '0')}`, kind: 'import-image' as const, accountId, state, statusMessage: '', progress: 0, bytesConverted: 0,
    request: { format: 'RAW' as const, bytes: 1, manifestUrl: '', volumeSizeGiB: 1 }, artifacts: {}, history: [],
    // Pairs share a creation time, so ties are broken by id across page boundaries.
    createdAt: new Date(T0 + Math.floor(n / 2) * 1000).toISOString(), updatedAt: new Date(T0).toISOString(), expiresAt: new Date(T0 + 1e9).toISOString(), version: 0,
  });
  let store: SqliteTaskStore;
  beforeEach(async () => {
    store = SqliteTaskStore.open(':memory:');
    // 40 tasks of the caller, every third one failed; 40 of another account in between.
    for (let n = 0; n < 40; n++) {
      await store.create(task(n, n % 3 === 0 ? 'failed' : 'completed'));
      await store.create(task(100 + n, 'completed', '222222222222'));
    }
  });
  afterEach(() => store.close());

  test('pages of a filtered listing hold every match once, in order, even where a filter empties a whole batch', async () => {
    const query = { accountId: '111111111111', kinds: ['import-image' as const] };
    const keep = (t: { state: string }) => t.state === 'failed';
    const expected = (await store.list(query)).filter(keep).map((t) => t.id);
    expect(expected).toHaveLength(14);
    const seen: string[] = [];
    let nextToken: string | undefined;
    let pages = 0;
    do {
      const out = await pageOfTasks(store, query, keep, { maxResults: 3, ...(nextToken ? { nextToken } : {}) }, 'q');
      expect(out.items.length).toBeLessThanOrEqual(3);
      seen.push(...out.items.map((t) => t.id));
      nextToken = out.nextToken;
      pages++;
    } while (nextToken);
    expect(seen).toEqual(expected);
    expect(pages).toBe(5);
    // Unpaged: all of them at once.
    expect((await pageOfTasks(store, query, keep, {}, 'q')).items.map((t) => t.id)).toEqual(expected);
  });

  test('a token is bound to its query; a forged or foreign one is InvalidPaginationToken', async () => {
    const query = { accountId: '111111111111', kinds: ['import-image' as const] };
    const first = await pageOfTasks(store, query, () => true, { maxResults: 5 }, 'query A');
    expect(first.nextToken).toBeDefined();
    await expect(pageOfTasks(store, query, () => true, { maxResults: 5, nextToken: first.nextToken }, 'query B')).rejects.toMatchObject({ code: 'InvalidPaginationToken' });
    await expect(pageOfTasks(store, query, () => true, { nextToken: 'bm9wZQ' }, 'query A')).rejects.toMatchObject({ code: 'InvalidPaginationToken' });
  });
});
