/** Query parsing over a real HTTP server: what node hands the gateway is what we parse. */
import { createServer, type Server } from 'http';
import type { AddressInfo } from 'net';
import { Ec2Error } from '../../../gateway/errors';
import { parseQueryRequest, QueryParams, readRawRequest } from '../../../gateway/query-request';

let server: Server;
let base: string;

/** Echoes the parsed request (or the Ec2Error) as JSON. */
beforeAll(async () => {
  server = createServer(async (req, res) => {
    try {
      const parsed = parseQueryRequest(await readRawRequest(req, 1024));
      res.end(JSON.stringify({ action: parsed.action, version: parsed.version, params: parsed.params.entries(), path: parsed.raw.path, rawQuery: parsed.raw.rawQuery }));
    } catch (err) {
      const e = err as Ec2Error;
      res.writeHead(e.httpStatus ?? 500, e.httpStatus === 413 ? { Connection: 'close' } : {});
      res.end(JSON.stringify({ code: e.code, message: e.message }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const form = { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' };

test('GET: parameters from the query string, percent- and plus-decoded', async () => {
  const res = await fetch(`${base}/path%20x?Action=DescribeConversionTasks&Version=2016-11-15&ConversionTaskId.1=a%2Bb&Description=x+y`);
  const body: any = await res.json();
  expect(body.action).toBe('DescribeConversionTasks');
  expect(body.version).toBe('2016-11-15');
  expect(body.path).toBe('/path%20x');
  expect(new Map(body.params).get('ConversionTaskId.1')).toBe('a+b');
  expect(new Map(body.params).get('Description')).toBe('x y');
});

test('POST: parameters from the form body, merged with the query string', async () => {
  const res = await fetch(`${base}/?Version=2016-11-15`, { method: 'POST', headers: form, body: 'Action=ImportVolume&Image.Format=RAW&Description=%C3%A9t%C3%A9' });
  const body: any = await res.json();
  expect(body.action).toBe('ImportVolume');
  expect(body.version).toBe('2016-11-15');
  expect(new Map(body.params).get('Description')).toBe('été');
});

test('no Action → MissingParameter', async () => {
  const res = await fetch(`${base}/?Version=2016-11-15`);
  expect(await res.json()).toMatchObject({ code: 'MissingParameter', message: expect.stringContaining('Action') });
});

test('a body over the limit → 413, refused before it is all read', async () => {
  const res = await fetch(`${base}/`, { method: 'POST', headers: form, body: `Action=X&Description=${'a'.repeat(2000)}` });
  expect(res.status).toBe(413);
  expect(((await res.json()) as any).code).toBe('InvalidParameterValue');
});

test('a streamed (chunked) body over the limit → 413 too', async () => {
  const chunk = new TextEncoder().encode('Description=' + 'a'.repeat(600));
  const body = new ReadableStream({
    start(controller) {
      controller.enqueue(chunk);
      controller.enqueue(chunk);
      controller.close();
    },
  });
  const res = await fetch(`${base}/`, { method: 'POST', headers: form, body, duplex: 'half' } as RequestInit);
  expect(res.status).toBe(413);
});

test('a JSON body → 415 InvalidParameterValue; PUT → 405 UnsupportedOperation', async () => {
  const json = await fetch(`${base}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"Action":"X"}' });
  expect(json.status).toBe(415);
  expect(((await json.json()) as any).code).toBe('InvalidParameterValue');
  const put = await fetch(`${base}/?Action=X`, { method: 'PUT' });
  expect(put.status).toBe(405);
  expect(((await put.json()) as any).code).toBe('UnsupportedOperation');
});

test('a parameter given twice → InvalidParameter', async () => {
  const res = await fetch(`${base}/?Action=X&Action=Y`);
  expect(await res.json()).toMatchObject({ code: 'InvalidParameter', message: expect.stringContaining('Action') });
});

describe('QueryParams accessors', () => {
  const params = new QueryParams([
    ['Id.10', 'ten'],
    ['Id.2', 'two'],
    ['Id.1', 'one'],
    ['Idx.3', 'not in the list'],
    ['Size', '42'],
    ['Zero', '0'],
    ['Neg', '-1'],
    ['Frac', '1.5'],
    ['Huge', '9007199254740993'],
    ['Hex', '0x10'],
    ['Yes', 'TRUE'],
    ['No', 'false'],
    ['Maybe', 'yes'],
    ['Empty', ''],
  ]);
  const codeOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      return (e as Ec2Error).code;
    }
    return 'no error';
  };

  test('lists come back in index order, by number not text', () => {
    expect(params.list('Id')).toEqual(['one', 'two', 'ten']);
    expect(params.list('Missing')).toEqual([]);
    expect(codeOf(() => new QueryParams([['Id.0', 'x']]).list('Id'))).toBe('InvalidParameter');
  });

  test('positive integers', () => {
    expect(params.positiveInteger('Size')).toBe(42);
    expect(params.positiveInteger('Absent')).toBeUndefined();
    for (const name of ['Zero', 'Neg', 'Frac', 'Huge', 'Hex']) expect(codeOf(() => params.positiveInteger(name))).toBe('InvalidParameterValue');
    expect(codeOf(() => params.requiredPositiveInteger('Absent'))).toBe('MissingParameter');
    expect(codeOf(() => params.requiredPositiveInteger('Empty'))).toBe('MissingParameter');
  });

  test('booleans', () => {
    expect(params.boolean('Yes')).toBe(true);
    expect(params.boolean('No')).toBe(false);
    expect(params.boolean('Absent')).toBeUndefined();
    expect(codeOf(() => params.boolean('Maybe'))).toBe('InvalidParameterValue');
  });

  test('required strings', () => {
    expect(params.requiredString('Size')).toBe('42');
    expect(codeOf(() => params.requiredString('Empty'))).toBe('MissingParameter');
  });
});
