/**
 * What the Describe* actions share: EC2 filters (Name + values, `*` and `?` wildcards, `tag:KEY`),
 * MaxResults/NextToken paging with opaque tokens bound to the query that made them, and tags.
 */
import { createHash } from 'crypto';
import type { TaskCursor, TaskQuery, TaskStore } from '../../tasks/store';
import type { Tag, TaskDocument } from '../../tasks/task';
import { Ec2Error, invalidValue } from '../errors';
import type { QueryParams } from '../query-request';

export type Filters = Map<string, string[]>;

/** `Filters.N.Name` / `Filters.N.Value.M` (or `Filter.N…` for the older actions). */
export function parseFilters(params: QueryParams, prefix: 'Filters' | 'Filter', known: readonly string[]): Filters {
  const filters: Filters = new Map();
  const indexes = new Set<number>();
  const pattern = new RegExp(`^${prefix}\\.(\\d+)\\.`);
  for (const [name] of params.entries()) {
    const m = pattern.exec(name);
    if (m) indexes.add(Number(m[1]));
  }
  for (const i of [...indexes].sort((a, b) => a - b)) {
    const name = params.string(`${prefix}.${i}.Name`);
    if (!name) throw new Ec2Error('MissingParameter', `The request must contain the parameter ${prefix}.${i}.Name`);
    const isTag = name.startsWith('tag:') && name.length > 4;
    if (!isTag && !known.includes(name)) {
      throw new Ec2Error('InvalidParameterValue', `The filter '${name}' is invalid; filters here are ${[...known, 'tag:<key>'].join(', ')}`);
    }
    const values = params.list(`${prefix}.${i}.Value`);
    filters.set(name, [...(filters.get(name) ?? []), ...values]);
  }
  return filters;
}

function globToRegExp(glob: string): RegExp {
  // EC2 wildcards: * any run, ? one character, \ escapes them.
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '\\' && i + 1 < glob.length) out += glob[++i].replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    else if (c === '*') out += '.*';
    else if (c === '?') out += '.';
    else out += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`, 's');
}

/** Whether one of `values` (the filter's, with wildcards) matches one of `actual`. */
export function matchesAny(values: string[], actual: (string | undefined)[]): boolean {
  const present = actual.filter((a): a is string => a !== undefined);
  return values.some((v) => {
    const re = globToRegExp(v);
    return present.some((a) => re.test(a));
  });
}

/** Applies the filters; `fields` gives an item's values for a filter name (tag filters are handled here). */
export function applyFilters<T extends { tags?: Tag[] }>(items: T[], filters: Filters, fields: (item: T, name: string) => (string | undefined)[]): T[] {
  if (filters.size === 0) return items;
  return items.filter((item) => {
    for (const [name, values] of filters) {
      if (values.length === 0) continue;
      let actual: (string | undefined)[];
      if (name.startsWith('tag:')) actual = (item.tags ?? []).filter((t) => t.key === name.slice(4)).map((t) => t.value);
      else if (name === 'tag-key') actual = (item.tags ?? []).map((t) => t.key);
      else if (name === 'tag-value') actual = (item.tags ?? []).map((t) => t.value);
      else actual = fields(item, name);
      if (!matchesAny(values, actual)) return false;
    }
    return true;
  });
}

export interface PageRequest {
  maxResults?: number;
  nextToken?: string;
}

export function parsePageRequest(params: QueryParams, limits: { min: number; max: number } = { min: 1, max: 1000 }): PageRequest {
  const text = params.string('MaxResults');
  let maxResults: number | undefined;
  if (text !== undefined && text !== '') {
    maxResults = Number(text);
    if (!/^\d+$/.test(text.trim()) || maxResults < limits.min || maxResults > limits.max) {
      throw invalidValue('MaxResults', text, `It must be a whole number from ${limits.min} to ${limits.max}.`);
    }
  }
  const nextToken = params.string('NextToken') || undefined;
  return { maxResults, nextToken };
}

/**
 * One page of `items`. The token carries the offset and a digest of the query it belongs to
 * (caller and filters), so a token cannot be replayed against another query or account.
 */
export function page<T>(items: T[], request: PageRequest, queryKey: unknown): { items: T[]; nextToken?: string } {
  const digest = createHash('sha256').update(JSON.stringify(queryKey)).digest('base64url').slice(0, 16);
  let offset = 0;
  if (request.nextToken) {
    const decoded = decodeToken(request.nextToken);
    if (!decoded || decoded.d !== digest) throw new Ec2Error('InvalidPaginationToken', `The token '${request.nextToken}' is invalid for this request; pass the NextToken of the previous page of the same request`);
    offset = decoded.o;
  }
  if (request.maxResults === undefined && !request.nextToken) return { items };
  const size = request.maxResults ?? 1000;
  const slice = items.slice(offset, offset + size);
  const next = offset + size < items.length ? Buffer.from(JSON.stringify({ o: offset + size, d: digest })).toString('base64url') : undefined;
  return { items: slice, ...(next ? { nextToken: next } : {}) };
}

function decodeToken(token: string): { o: number; d: string } | undefined {
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (Number.isSafeInteger(parsed?.o) && parsed.o >= 0 && typeof parsed.d === 'string') return parsed;
  } catch {
    // fall through
  }
  return undefined;
}

export const MAX_TAGS = 50;
const MAX_TAG_KEY = 128;
const MAX_TAG_VALUE = 256;

/** `Tag.N.Key` / `Tag.N.Value` under `prefix` (e.g. 'Tag' or 'TagSpecification.1.Tag'). */
export function parseTags(params: QueryParams, prefix: string, _options: { valuesRequired?: boolean } = {}): Tag[] {
  const indexes = new Set<number>();
  const pattern = new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.(\\d+)\\.(Key|Value)$`);
  for (const [name] of params.entries()) {
    const m = pattern.exec(name);
    if (m) indexes.add(Number(m[1]));
  }
  const tags: Tag[] = [];
  for (const i of [...indexes].sort((a, b) => a - b)) {
    const key = params.string(`${prefix}.${i}.Key`);
    if (key === undefined || key === '') throw new Ec2Error('MissingParameter', `The request must contain the parameter ${prefix}.${i}.Key`);
    if (key.length > MAX_TAG_KEY || key.toLowerCase().startsWith('aws:')) {
      throw new Ec2Error('InvalidParameterValue', `Tag key '${key.slice(0, 40)}' is invalid: keys have 1 to ${MAX_TAG_KEY} characters and may not start with aws:`);
    }
    const value = params.string(`${prefix}.${i}.Value`) ?? '';
    if (value.length > MAX_TAG_VALUE) throw new Ec2Error('InvalidParameterValue', `The value of tag '${key}' is longer than ${MAX_TAG_VALUE} characters`);
    if (tags.some((t) => t.key === key)) throw new Ec2Error('InvalidParameterValue', `Tag key '${key}' is given more than once`);
    tags.push({ key, value });
  }
  if (tags.length > MAX_TAGS) throw new Ec2Error('TagLimitExceeded', `The request has ${tags.length} tags; at most ${MAX_TAGS} are allowed per resource`);
  return tags;
}

/** TagSpecification.N.ResourceType + its tags, for the resource types an action accepts. */
export function parseTagSpecifications(params: QueryParams, allowed: readonly string[]): Map<string, Tag[]> {
  const out = new Map<string, Tag[]>();
  const indexes = new Set<number>();
  for (const [name] of params.entries()) {
    const m = /^TagSpecification\.(\d+)\./.exec(name);
    if (m) indexes.add(Number(m[1]));
  }
  for (const i of [...indexes].sort((a, b) => a - b)) {
    const type = params.requiredString(`TagSpecification.${i}.ResourceType`);
    if (!allowed.includes(type)) throw invalidValue(`TagSpecification.${i}.ResourceType`, type, `Tags can be given here for ${allowed.join(', ')}.`);
    if (out.has(type)) throw new Ec2Error('InvalidParameterValue', `TagSpecification names resource type ${type} more than once`);
    out.set(type, parseTags(params, `TagSpecification.${i}.Tag`));
  }
  return out;
}

/** Tags as EC2 renders them in a tagSet. */
export const tagSetXml = (tags: Tag[] | undefined) => (tags && tags.length ? tags.map((t) => ({ key: t.key, value: t.value })) : undefined);

/**
 * One page of a newest-first task listing, read from the store a page at a time: the token is
 * a keyset cursor (the last task shown), so a page costs the same with 100 tasks or 100,000, and
 * filters the store does not know are applied to each batch as it arrives. Like `page`, the
 * token is bound to the query that made it.
 */
export async function pageOfTasks(
  store: TaskStore,
  query: TaskQuery,
  keep: (task: TaskDocument) => boolean,
  request: PageRequest,
  queryKey: unknown,
): Promise<{ items: TaskDocument[]; nextToken?: string }> {
  const digest = createHash('sha256').update(JSON.stringify(queryKey)).digest('base64url').slice(0, 16);
  let before: TaskCursor | undefined;
  if (request.nextToken) {
    before = decodeTaskToken(request.nextToken, digest);
    if (!before) throw new Ec2Error('InvalidPaginationToken', `The token '${request.nextToken}' is invalid for this request; pass the NextToken of the previous page of the same request`);
  }
  if (request.maxResults === undefined && !request.nextToken) return { items: (await store.list(query)).filter(keep) };
  const size = request.maxResults ?? 1000;
  const items: TaskDocument[] = [];
  for (;;) {
    // One more than the page holds, so a full page knows whether another follows.
    const wanted = size - items.length + 1;
    const batch = await store.list({ ...query, limit: wanted, ...(before ? { before } : {}) });
    items.push(...batch.filter(keep));
    if (items.length > size) {
      const last = items[size - 1];
      const token = Buffer.from(JSON.stringify({ c: last.createdAt, i: last.id, d: digest })).toString('base64url');
      return { items: items.slice(0, size), nextToken: token };
    }
    if (batch.length < wanted) return { items };
    const tail = batch[batch.length - 1];
    before = { createdAt: tail.createdAt, id: tail.id };
  }
}

function decodeTaskToken(token: string, digest: string): TaskCursor | undefined {
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (parsed?.d === digest && typeof parsed.c === 'string' && !Number.isNaN(Date.parse(parsed.c)) && typeof parsed.i === 'string') return { createdAt: parsed.c, id: parsed.i };
  } catch {
    // fall through
  }
  return undefined;
}
