/**
 * The gateway end to end at the HTTP level: every EC2 error code it can answer, with its
 * status and a request id that matches the header; requests are signed by @smithy/signature-v4.
 */
import { request as httpRequest } from 'http';
import { XMLParser } from 'fast-xml-parser';
import type { CloudEvent } from 'cloudevents';
import { createGateway, StaticAccountDirectory } from '../../../gateway';
import { SqliteTaskStore } from '../../../tasks/sqlite-store';
import type { TaskStore } from '../../../tasks/store';
import type { RawRequest } from '../../../gateway/query-request';
import { presignWithSmithy, signWithSmithy, type Unsigned } from './signed-requests';

const SECRET = 'server-test-secret';
const ACCOUNT = { accountId: '333333333333', accessKeyId: 'AKIDTEST', secretAccessKey: SECRET };
const OTHER = { accountId: '444444444444', accessKeyId: 'AKIDOTHER', secretAccessKey: 'other-secret' };
const MANIFEST = 'https://objects.test/bucket/manifest.xml';

let sqlite: SqliteTaskStore;
let failStore = false;
let failPublish = false;
const events: CloudEvent<unknown>[] = [];
const logged: { level: string; obj: any }[] = [];
let base: URL;
let close: () => Promise<void>;

beforeAll(async () => {
  sqlite = SqliteTaskStore.open(':memory:');
  // The real store, with a switch that makes it fail like a lost database connection.
  const tasks: TaskStore = new Proxy(sqlite, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (failStore) return Promise.reject(new Error('database connection lost at /secret/path/db.sqlite'));
        return value.apply(target, args);
      };
    },
  });
  const gateway = createGateway({
    tasks,
    publish: async (event) => {
      if (failPublish) throw new Error('bus down');
      events.push(event);
    },
    accounts: new StaticAccountDirectory([ACCOUNT, OTHER]),
    region: 'eu-west-1',
    allowedObjectHosts: ['objects.test'],
    taskLifetimeMs: 60_000,
    log: {
      info: (obj) => logged.push({ level: 'info', obj }),
      warn: (obj) => logged.push({ level: 'warn', obj }),
      error: (obj) => logged.push({ level: 'error', obj }),
    },
  });
  const listening = await gateway.listen(0);
  base = new URL(listening.url);
  close = listening.close;
});

afterAll(async () => {
  await close();
  await sqlite.close();
});

/** Sends a RawRequest as is (Host header included) to the gateway. */
function send(raw: RawRequest): Promise<{ status: number; requestIdHeader: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: base.hostname, port: base.port, method: raw.method, path: raw.rawQuery ? `${raw.path}?${raw.rawQuery}` : raw.path, headers: { ...raw.headers, 'content-length': raw.body.length } as any },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, requestIdHeader: String(res.headers['x-amzn-requestid']), body }));
      },
    );
    req.on('error', reject);
    req.end(raw.body);
  });
}

const parser = new XMLParser();
const form = (params: Record<string, string>) => new URLSearchParams({ Version: '2016-11-15', ...params }).toString();
const signed = (params: Record<string, string>, opts: Parameters<typeof signWithSmithy>[2] = {}, unsigned: Unsigned = {}) =>
  signWithSmithy({ body: form(params), ...unsigned }, opts.accessKeyId === OTHER.accessKeyId ? OTHER.secretAccessKey : SECRET, { accessKeyId: ACCOUNT.accessKeyId, ...opts });

async function errorOf(raw: RawRequest | Promise<RawRequest>) {
  const res = await send(await raw);
  const doc = parser.parse(res.body);
  expect(doc.Response).toBeDefined();
  // The request id in the header and in the document are the same, so a user can quote either.
  expect(doc.Response.RequestID).toBe(res.requestIdHeader);
  expect(res.requestIdHeader).toMatch(/^[0-9a-f-]{36}$/);
  return { status: res.status, code: doc.Response.Errors.Error.Code as string, message: String(doc.Response.Errors.Error.Message) };
}

const importVolume = (extra: Record<string, string> = {}) => ({
  Action: 'ImportVolume',
  'Image.Format': 'raw',
  'Image.Bytes': '1073741824',
  'Image.ImportManifestUrl': MANIFEST,
  'Volume.Size': '1',
  ...extra,
});

async function newTask(): Promise<string> {
  const res = await send(await signed(importVolume()));
  expect(res.status).toBe(200);
  return parser.parse(res.body).ImportVolumeResponse.conversionTask.conversionTaskId;
}

test('success: 200, x-amzn-RequestId equal to requestId, task stored the way the contract says', async () => {
  const res = await send(await signed(importVolume({ Description: 'd' })));
  expect(res.status).toBe(200);
  const doc = parser.parse(res.body).ImportVolumeResponse;
  expect(doc.requestId).toBe(res.requestIdHeader);
  const id = doc.conversionTask.conversionTaskId;
  const task = (await sqlite.get(id))!;
  expect(task).toMatchObject({
    state: 'pending-upload',
    statusMessage: 'Pending import-image upload',
    request: { format: 'RAW', bytes: 1073741824, manifestUrl: MANIFEST, volumeSizeGiB: 1, availabilityZone: 'eu-west-1a', description: 'd' },
  });
  expect(Date.parse(task.expiresAt) - Date.parse(task.createdAt)).toBe(60_000);
  expect(doc.conversionTask.importVolume.availabilityZone).toBe('eu-west-1a');
  expect(events.at(-1)).toMatchObject({ type: 'io.imaging.import.requested', source: '/imaging/gateway', subject: id, data: { taskId: id, accountId: ACCOUNT.accountId } });
});

test('a Signature Version 2 request is authenticated (euca2ools style, HmacSHA256 GET)', async () => {
  const { createHmac } = await import('crypto');
  const { uriEncode } = await import('../../../gateway/signing-common');
  const host = `${base.hostname}:${base.port}`;
  const fields: Record<string, string> = {
    Action: 'DescribeConversionTasks',
    Version: '2014-06-15',
    AWSAccessKeyId: ACCOUNT.accessKeyId,
    SignatureVersion: '2',
    SignatureMethod: 'HmacSHA256',
    Timestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
  const query = Object.keys(fields).sort().map((k) => `${uriEncode(k)}=${uriEncode(fields[k])}`).join('&');
  const sign = (secret: string) => encodeURIComponent(createHmac('sha256', secret).update(`GET\n${host}\n/\n${query}`).digest('base64'));
  const ok = await send({ method: 'GET', path: '/', rawQuery: `${query}&Signature=${sign(SECRET)}`, headers: { host }, body: Buffer.alloc(0) });
  expect(ok.status).toBe(200);
  expect(parser.parse(ok.body).DescribeConversionTasksResponse).toBeDefined();
  expect(await errorOf({ method: 'GET', path: '/', rawQuery: `${query}&Signature=${sign('wrong')}`, headers: { host }, body: Buffer.alloc(0) })).toMatchObject({ code: 'SignatureDoesNotMatch' });
});

describe('every error code', () => {
  test('AuthFailure (401): no signature at all', async () => {
    const raw: RawRequest = { method: 'GET', path: '/', rawQuery: 'Action=DescribeConversionTasks', headers: { host: 'x' }, body: Buffer.alloc(0) };
    expect(await errorOf(raw)).toMatchObject({ status: 401, code: 'AuthFailure' });
  });

  test('AuthFailure (401): unknown access key', async () => {
    expect(await errorOf(signWithSmithy({ body: form({ Action: 'DescribeConversionTasks' }) }, 'x', { accessKeyId: 'AKIDNOBODY' }))).toMatchObject({ status: 401, code: 'AuthFailure', message: expect.stringContaining('AKIDNOBODY') });
  });

  test('SignatureDoesNotMatch (403)', async () => {
    expect(await errorOf(signWithSmithy({ body: form({ Action: 'DescribeConversionTasks' }) }, 'wrong', { accessKeyId: ACCOUNT.accessKeyId }))).toMatchObject({ status: 403, code: 'SignatureDoesNotMatch' });
  });

  test('IncompleteSignature (400): another Authorization scheme', async () => {
    const raw = await signed({ Action: 'DescribeConversionTasks' });
    expect(await errorOf({ ...raw, headers: { ...raw.headers, authorization: 'Basic dXNlcjpwdw==' } })).toMatchObject({ status: 400, code: 'IncompleteSignature', message: expect.stringContaining('Basic') });
  });

  test('RequestExpired (400): signed 20 minutes ago, and a stale presigned URL', async () => {
    expect(await errorOf(signed({ Action: 'DescribeConversionTasks' }, { signingDate: new Date(Date.now() - 20 * 60_000) }))).toMatchObject({ status: 400, code: 'RequestExpired' });
    const stale = presignWithSmithy({ method: 'GET', query: { Action: 'DescribeConversionTasks' } }, SECRET, { signingDate: new Date(Date.now() - 120_000), expiresIn: 60 });
    expect(await errorOf(stale)).toMatchObject({ code: 'RequestExpired' });
  });

  test('a fresh presigned GET works', async () => {
    const res = await send(await presignWithSmithy({ method: 'GET', query: { Action: 'DescribeConversionTasks', Version: '2016-11-15' } }, SECRET));
    expect(res.status).toBe(200);
  });

  test('MissingParameter (400)', async () => {
    expect(await errorOf(signed(importVolume({ 'Image.ImportManifestUrl': '' })))).toMatchObject({ code: 'MissingParameter', message: expect.stringContaining('Image.ImportManifestUrl') });
    expect(await errorOf(signed({ Action: 'CancelConversionTask' }))).toMatchObject({ code: 'MissingParameter', message: expect.stringContaining('ConversionTaskId') });
  });

  test('InvalidParameterValue (400): format, bytes, size, url, DryRun', async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ 'Image.Format': 'qcow2' }, /qcow2.*RAW, VMDK, VHD/],
      [{ 'Image.Bytes': '-5' }, /Image\.Bytes/],
      [{ 'Volume.Size': '0' }, /Volume\.Size/],
      [{ 'Volume.Size': '20000' }, /16384 GiB/],
      [{ 'Image.Bytes': '1073741825' }, /1073741825 bytes.*1 GiB volume holds only 1073741824 bytes.*at least 2 GiB/],
      [{ 'Image.ImportManifestUrl': 'file:///etc/passwd' }, /scheme file/],
      [{ 'Image.ImportManifestUrl': 'http://localhost:8773/' }, /manifest URL host localhost:8773 is not an object-storage endpoint of this service/],
      [{ DryRun: 'maybe' }, /DryRun/],
    ];
    for (const [extra, message] of cases) {
      expect(await errorOf(signed(importVolume(extra)))).toMatchObject({ status: 400, code: 'InvalidParameterValue', message: expect.stringMatching(message) });
    }
  });

  test('InvalidParameter (400): a parameter twice', async () => {
    const raw = await signWithSmithy({ body: 'Action=DescribeConversionTasks&Action=ImportVolume' }, SECRET, { accessKeyId: ACCOUNT.accessKeyId });
    expect(await errorOf(raw)).toMatchObject({ code: 'InvalidParameter' });
  });

  test('InvalidAction (400); BundleInstance without its parameters: MissingParameter (400)', async () => {
    expect(await errorOf(signed({ Action: 'RunInstances' }))).toMatchObject({ status: 400, code: 'InvalidAction', message: expect.stringContaining('RunInstances') });
    expect(await errorOf(signed({ Action: 'toString' }))).toMatchObject({ code: 'InvalidAction' });
    expect(await errorOf(signed({ Action: 'BundleInstance' }))).toMatchObject({ status: 400, code: 'MissingParameter', message: expect.stringContaining('InstanceId') });
  });

  test('DryRunOperation (412) on each implemented action, and nothing changes', async () => {
    const id = await newTask();
    const count = (await sqlite.list({ accountId: ACCOUNT.accountId })).length;
    const dryRuns: Record<string, string>[] = [importVolume({ DryRun: 'true' }), { Action: 'ImportInstance', 'DiskImage.1.Image.Format': 'RAW', 'DiskImage.1.Image.Bytes': '10', 'DiskImage.1.Image.ImportManifestUrl': MANIFEST, 'DiskImage.1.Volume.Size': '1', DryRun: 'true' }, { Action: 'DescribeConversionTasks', DryRun: 'true' }, { Action: 'CancelConversionTask', ConversionTaskId: id, DryRun: 'True' },
      { Action: 'ImportImage', 'DiskContainer.1.Format': 'QCOW2', 'DiskContainer.1.UserBucket.S3Bucket': 'my-bucket', 'DiskContainer.1.UserBucket.S3Key': 'd.qcow2', ClientToken: 'dry', DryRun: 'true' },
      { Action: 'ImportSnapshot', 'DiskContainer.Format': 'VHDX', 'DiskContainer.UserBucket.S3Bucket': 'my-bucket', 'DiskContainer.UserBucket.S3Key': 'd.vhdx', DryRun: 'true' },
      ...['DescribeImportImageTasks', 'DescribeImportSnapshotTasks', 'DescribeImages', 'DescribeSnapshots', 'DescribeVolumes', 'DescribeTags'].map((Action) => ({ Action, DryRun: 'true' }))];
    for (const params of dryRuns) {
      expect(await errorOf(signed(params))).toEqual({ status: 412, code: 'DryRunOperation', message: 'Request would have succeeded, but DryRun flag is set.' });
    }
    expect((await sqlite.list({ accountId: ACCOUNT.accountId })).length).toBe(count);
    expect((await sqlite.get(id))!.cancelRequested).toBeUndefined();
  });

  test('InvalidConversionTaskId and InvalidConversionTaskId.Malformed (400)', async () => {
    const id = await newTask();
    expect(await errorOf(signed({ Action: 'DescribeConversionTasks', 'ConversionTaskId.1': id, 'ConversionTaskId.2': 'import-vol-deadbeef' }))).toMatchObject({
      code: 'InvalidConversionTaskId',
      message: "The conversion task ID 'import-vol-deadbeef' does not exist",
    });
    expect(await errorOf(signed({ Action: 'DescribeConversionTasks', 'ConversionTaskId.1': id }, { accessKeyId: OTHER.accessKeyId }))).toMatchObject({ code: 'InvalidConversionTaskId' });
    expect(await errorOf(signed({ Action: 'CancelConversionTask', ConversionTaskId: id }, { accessKeyId: OTHER.accessKeyId }))).toMatchObject({ code: 'InvalidConversionTaskId' });
    expect(await errorOf(signed({ Action: 'CancelConversionTask', ConversionTaskId: "'; DROP TABLE tasks" }))).toMatchObject({ code: 'InvalidConversionTaskId.Malformed' });
    expect((await sqlite.get(id))!.cancelRequested).toBeUndefined();
  });

  test('IncorrectState (400): cancelling a finished task', async () => {
    const id = await newTask();
    const ok = await send(await signed({ Action: 'CancelConversionTask', ConversionTaskId: id }));
    expect(parser.parse(ok.body).CancelConversionTaskResponse.return).toBe(true);
    expect((await sqlite.get(id))!).toMatchObject({ state: 'cancelled', statusMessage: 'Canceled by user' });
    expect(await errorOf(signed({ Action: 'CancelConversionTask', ConversionTaskId: id }))).toMatchObject({ code: 'IncorrectState', message: expect.stringContaining(id) });
    // DryRun checks the state too: it answers what the real call would.
    expect(await errorOf(signed({ Action: 'CancelConversionTask', ConversionTaskId: id, DryRun: 'true' }))).toMatchObject({ code: 'IncorrectState' });
  });

  test('InternalError (500): generic message to the client, stack in the log, server keeps serving', async () => {
    failStore = true;
    let error;
    try {
      error = await errorOf(signed({ Action: 'DescribeConversionTasks' }));
    } finally {
      failStore = false;
    }
    expect(error).toMatchObject({ status: 500, code: 'InternalError' });
    expect(error.message).not.toMatch(/database|secret|sqlite/);
    const entry = logged.filter((l) => l.level === 'error').at(-1)!;
    expect(entry.obj.err.stack).toContain('database connection lost');
    expect(entry.obj.code).toBe('InternalError');
    const again = await send(await signed({ Action: 'DescribeConversionTasks' }));
    expect(again.status).toBe(200);
  });

  test('a failed publish still answers with the task, recorded with its start event for the sweeper to publish', async () => {
    const before = new Set((await sqlite.list({ accountId: ACCOUNT.accountId })).map((t) => t.id));
    failPublish = true;
    let answer;
    try {
      answer = await send(await signed(importVolume()));
    } finally {
      failPublish = false;
    }
    expect(answer.status).toBe(200);
    const created = (await sqlite.list({ accountId: ACCOUNT.accountId })).filter((t) => !before.has(t.id));
    expect(created).toHaveLength(1);
    expect(answer.body).toContain(created[0].id);
    expect(created[0]).toMatchObject({ state: 'pending-upload', outbox: { id: `${created[0].id}/pending-upload`, type: 'io.imaging.import.requested' } });
    expect(logged.some((l) => l.level === 'warn' && l.obj.taskId === created[0].id)).toBe(true);
  });
});
