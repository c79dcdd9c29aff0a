/** Action handlers on a real (in-memory SQLite) task store: the cases HTTP tests cannot time. */
import type { ActionContext } from '../../../gateway/actions/action';
import { cancelConversionTask } from '../../../gateway/actions/cancel-conversion-task';
import { importVolume } from '../../../gateway/actions/import-volume';
import { checkManifestUrl } from '../../../gateway/actions/manifest-url';
import { QueryParams } from '../../../gateway/query-request';
import { SqliteTaskStore } from '../../../tasks/sqlite-store';
import { transition, updateTask } from '../../../tasks/state-machine';

let store: SqliteTaskStore;
let ctx: ActionContext;

beforeEach(() => {
  store = SqliteTaskStore.open(':memory:');
  ctx = {
    caller: { accountId: '555555555555', accessKeyId: 'AKID' },
    tasks: store,
    publish: async () => undefined,
    region: 'us-west-2',
    allowedObjectHosts: ['objects.test', 'minio.local:9000'],
    taskLifetimeMs: 1000,
    now: () => new Date(),
  };
});
afterEach(() => store.close());

const params = (entries: Record<string, string>) => new QueryParams(Object.entries(entries));

async function pendingTask(): Promise<string> {
  const request = await importVolume.validate(
    params({ 'Image.Format': 'VMDK', 'Image.Bytes': '10', 'Image.ImportManifestUrl': 'https://objects.test/b/m', 'Volume.Size': '1' }),
    ctx,
  );
  const out: any = await importVolume.run(request, ctx);
  return out.conversionTask.conversionTaskId;
}

test('a task that finishes between validation and cancellation → IncorrectState, task untouched', async () => {
  const id = await pendingTask();
  const input = await cancelConversionTask.validate(params({ ConversionTaskId: id }), ctx);
  await updateTask(store, id, (doc) => transition(doc, 'failed', 'ClientError: disk unreadable'));
  await expect(cancelConversionTask.run(input, ctx)).rejects.toMatchObject({ code: 'IncorrectState' });
  expect((await store.get(id))!).toMatchObject({ state: 'failed', statusMessage: 'ClientError: disk unreadable' });
  expect((await store.get(id))!.cancelRequested).toBeUndefined();
});

test('cancelling twice while a stage works keeps the first request', async () => {
  const id = await pendingTask();
  await updateTask(store, id, (doc) => transition(doc, 'manifest-received'));
  await cancelConversionTask.run(await cancelConversionTask.validate(params({ ConversionTaskId: id, ReasonMessage: 'first' }), ctx), ctx);
  const first = (await store.get(id))!;
  await cancelConversionTask.run(await cancelConversionTask.validate(params({ ConversionTaskId: id, ReasonMessage: 'second' }), ctx), ctx);
  const second = (await store.get(id))!;
  expect(second.cancelRequested).toEqual({ at: first.cancelRequested!.at, reason: 'first' });
  expect(second.state).toBe('manifest-received');
  expect(second.version).toBe(first.version);
});

test('cancelling a pending task records it in the history', async () => {
  const id = await pendingTask();
  await cancelConversionTask.run(await cancelConversionTask.validate(params({ ConversionTaskId: id }), ctx), ctx);
  const task = (await store.get(id))!;
  expect(task.history.map((h) => h.to)).toEqual(['pending-upload', 'cancelled']);
  expect(task.history[1]).toMatchObject({ from: 'pending-upload', message: 'Canceled by user' });
  expect(task.version).toBe(1);
});

test('ImportVolume fills in the availability zone and keeps the description', async () => {
  const request = await importVolume.validate(
    params({ 'Image.Format': 'vhd', 'Image.Bytes': '10', 'Image.ImportManifestUrl': 'http://MINIO.local:9000/b/m', 'Volume.Size': '1', Description: 'x' }),
    ctx,
  );
  expect(request).toEqual({ format: 'VHD', bytes: 10, manifestUrl: 'http://MINIO.local:9000/b/m', volumeSizeGiB: 1, availabilityZone: 'us-west-2a', description: 'x' });
});

describe('manifest URL host check (the SSRF door)', () => {
  const allowed = ['objects.test', 'minio.local:9000', 'secure.test:443'];
  const accepts = (url: string) => expect(() => checkManifestUrl('Image.ImportManifestUrl', url, allowed)).not.toThrow();
  const refuses = (url: string) => expect(() => checkManifestUrl('Image.ImportManifestUrl', url, allowed)).toThrow(expect.objectContaining({ code: 'InvalidParameterValue' }));

  test('allowed hosts, default ports either way, any case', () => {
    accepts('https://objects.test/bucket/key?X-Amz-Signature=1');
    accepts('http://objects.test:80/bucket/key');
    accepts('http://MINIO.LOCAL:9000/b/k');
    accepts('https://secure.test/b/k');
  });

  test('other hosts, ports, schemes and tricks', () => {
    refuses('http://objects.test:8080/b/k');
    refuses('http://minio.local/b/k');
    refuses('http://169.254.169.254/latest/meta-data/');
    refuses('http://objects.test.evil.com/b/k');
    refuses('http://objects.test@evil.com/b/k');
    refuses('http://user:pw@objects.test/b/k');
    refuses('ftp://objects.test/b/k');
    refuses('file:///etc/passwd');
    refuses('not a url');
    refuses('http://[::1]:9000/b/k');
  });
});
