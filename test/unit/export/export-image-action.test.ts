/**
 * ExportImage and CancelExportTask on a real (in-memory SQLite) task store: every parameter is
 * checked before anything is recorded (DryRun records nothing), the task and its key follow
 * EC2's naming, the source resolves to the image's snapshot, and CancelExportTask takes both
 * kinds of export task.
 */
import type { CloudEvent } from 'cloudevents';
import type { ActionContext } from '../../../gateway/actions/action';
import { runAction } from '../../../gateway/actions';
import { QueryParams } from '../../../gateway/query-request';
import { SqliteTaskStore } from '../../../tasks/sqlite-store';

const ACCOUNT = '555555555555';
const IMAGE = 'ami-0123456789abcdef0';
const SNAPSHOT = 'snap-0123456789abcdef0';
const source = { bucket: 'imaging-images', key: 'images/import-ami-0123456789abcdef0/disk.raw', size: 3 * 2 ** 30 + 512 };

let store: SqliteTaskStore;
let ctx: ActionContext;
let events: CloudEvent<unknown>[];

beforeEach(async () => {
  store = SqliteTaskStore.open(':memory:');
  events = [];
  ctx = {
    caller: { accountId: ACCOUNT, accessKeyId: 'AKID' },
    tasks: store,
    publish: async (event) => void events.push(event),
    region: 'us-east-1',
    allowedObjectHosts: [],
    taskLifetimeMs: 60_000,
    now: () => new Date(),
  };
  const createdAt = new Date().toISOString();
  await store.putResource({ id: SNAPSHOT, kind: 'snapshot', accountId: ACCOUNT, taskId: 'import-ami-0123456789abcdef0', sizeGiB: 4, image: source, createdAt });
  await store.putResource({
    id: IMAGE, kind: 'image', accountId: ACCOUNT, taskId: 'import-ami-0123456789abcdef0', name: 'img', architecture: 'x86_64',
    rootDeviceName: '/dev/sda1', snapshotIds: [SNAPSHOT], sizeGiB: 4, createdAt,
  });
});
afterEach(() => store.close());

const base = { ImageId: IMAGE, DiskImageFormat: 'VHD', 'S3ExportLocation.S3Bucket': 'my-exports', 'S3ExportLocation.S3Prefix': 'vms/' };
const call = (action: string, entries: Record<string, string>) => runAction(action, new QueryParams(Object.entries(entries)), ctx) as Promise<any>;
const codeOf = (promise: Promise<unknown>) => promise.then(() => 'ok', (e) => (e as { code?: string }).code ?? String(e));

test("ExportImage records an export-image task over the image's snapshot, keyed as EC2 names it, and announces it", async () => {
  const out = await call('ExportImage', { ...base, Description: 'to hyper-v', RoleName: 'vmimport', 'TagSpecification.1.ResourceType': 'export-image-task', 'TagSpecification.1.Tag.1.Key': 'k', 'TagSpecification.1.Tag.1.Value': 'v' });
  expect(out.exportImageTaskId).toMatch(/^export-ami-[0-9a-f]{17}$/);
  expect(out).toMatchObject({ imageId: IMAGE, diskImageFormat: 'VHD', roleName: 'vmimport', status: 'active', progress: '0', description: 'to hyper-v', s3ExportLocation: { s3Bucket: 'my-exports', s3Prefix: 'vms/' }, tagSet: [{ key: 'k', value: 'v' }] });
  const task = (await store.get(out.exportImageTaskId))!;
  expect(task).toMatchObject({ kind: 'export-image', accountId: ACCOUNT, state: 'export-requested', tags: [{ key: 'k', value: 'v' }] });
  expect(task.request.export).toMatchObject({ imageId: IMAGE, snapshotId: SNAPSHOT, source, vhdType: 'dynamic', s3Key: `vms/${out.exportImageTaskId}.vhd` });
  expect(events.map((e) => [e.type, (e.data as { taskId: string }).taskId])).toEqual([['io.imaging.export.requested', out.exportImageTaskId]]);
});

test('every parameter is checked before anything is recorded; DryRun records nothing', async () => {
  const { DiskImageFormat: _omitted, ...noFormat } = base;
  expect(await codeOf(call('ExportImage', noFormat))).toBe('MissingParameter');
  expect(await codeOf(call('ExportImage', { ...base, DiskImageFormat: 'QCOW2' }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('ExportImage', { ...base, DiskImageFormat: 'RAW', 'X-ImagingVhdType': 'fixed' }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('ExportImage', { ...base, 'X-ImagingVhdType': 'sparse' }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('ExportImage', { ...base, 'S3ExportLocation.S3Bucket': 'UPPER' }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('ExportImage', { ...base, 'S3ExportLocation.S3Prefix': 'a\nb' }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('ExportImage', { ...base, RoleName: 'has spaces' }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('ExportImage', { ...base, ClientToken: 'x'.repeat(65) }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('ExportImage', { ...base, 'TagSpecification.1.ResourceType': 'image', 'TagSpecification.1.Tag.1.Key': 'k' }))).toBe('InvalidParameterValue');
  expect(await codeOf(call('ExportImage', { ...base, ImageId: 'ami-xyz' }))).toBe('InvalidAMIID.Malformed');
  expect(await codeOf(call('ExportImage', { ...base, ImageId: 'ami-0fffffffffffffff0' }))).toBe('InvalidAMIID.NotFound');
  expect(await codeOf(call('ExportImage', { ...base, DryRun: 'true' }))).toBe('DryRunOperation');
  expect(await store.list({ accountId: ACCOUNT })).toEqual([]);
  expect(events).toEqual([]);
});

test("an image of another account is not found; one whose snapshot is gone, or another's, is NotExportable", async () => {
  const createdAt = new Date().toISOString();
  await store.putResource({ id: 'ami-0aaaaaaaaaaaaaaa0', kind: 'image', accountId: '999999999999', taskId: 't', name: 'x', architecture: 'x86_64', rootDeviceName: '/dev/sda1', snapshotIds: [SNAPSHOT], sizeGiB: 1, createdAt });
  await store.putResource({ id: 'snap-0bbbbbbbbbbbbbbb0', kind: 'snapshot', accountId: '999999999999', taskId: 't', sizeGiB: 1, image: source, createdAt });
  await store.putResource({ id: 'ami-0bbbbbbbbbbbbbbb0', kind: 'image', accountId: ACCOUNT, taskId: 't', name: 'y', architecture: 'x86_64', rootDeviceName: '/dev/sda1', snapshotIds: ['snap-0bbbbbbbbbbbbbbb0'], sizeGiB: 1, createdAt });
  await store.putResource({ id: 'ami-0ccccccccccccccc0', kind: 'image', accountId: ACCOUNT, taskId: 't', name: 'z', architecture: 'x86_64', rootDeviceName: '/dev/sda1', snapshotIds: ['snap-0ccccccccccccccc0'], sizeGiB: 1, createdAt });
  expect(await codeOf(call('ExportImage', { ...base, ImageId: 'ami-0aaaaaaaaaaaaaaa0' }))).toBe('InvalidAMIID.NotFound');
  expect(await codeOf(call('ExportImage', { ...base, ImageId: 'ami-0bbbbbbbbbbbbbbb0' }))).toBe('NotExportable');
  expect(await codeOf(call('ExportImage', { ...base, ImageId: 'ami-0ccccccccccccccc0' }))).toBe('NotExportable');
});

test('CancelExportTask marks an export-image task for the stage; a second call after it ended is IncorrectState', async () => {
  const out = await call('ExportImage', base);
  expect(await call('CancelExportTask', { ExportTaskId: out.exportImageTaskId })).toEqual({ return: true });
  const marked = (await store.get(out.exportImageTaskId))!;
  expect(marked.cancelRequested?.reason).toBe('Canceled by user');
  const listed = await call('DescribeExportImageTasks', { 'ExportImageTaskId.1': out.exportImageTaskId });
  expect(listed.exportImageTaskSet[0]).toMatchObject({ status: 'deleting', statusMessage: 'Canceled by user' });
  // Not an export-instance task: DescribeExportTasks does not show it.
  expect((await call('DescribeExportTasks', {})).exportTaskSet).toEqual([]);
  await store.compareAndSet({ ...marked, state: 'cancelled', version: marked.version + 1 }, marked.version);
  expect(await codeOf(call('CancelExportTask', { ExportTaskId: out.exportImageTaskId }))).toBe('IncorrectState');
});
