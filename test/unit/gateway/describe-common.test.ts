import { applyFilters, matchesAny, page, parseFilters, parseTags, parseTagSpecifications } from '../../../gateway/actions/describe-common';
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
