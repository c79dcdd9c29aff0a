/**
 * CopyImage on a real (in-memory SQLite) task store: an EBS-backed source is copied as EC2 copies
 * it, sharing its snapshot's bytes; bytes are removed only with the last record naming them; a
 * source deregistered between the checks and the copy takes the copy back.
 */
import type { ActionContext } from '../../../gateway/actions/action';
import { copyImage } from '../../../gateway/actions/copy-image';
import { runAction } from '../../../gateway/actions';
import { QueryParams } from '../../../gateway/query-request';
import { SqliteTaskStore } from '../../../tasks/sqlite-store';
import type { ImageRecord, SnapshotRecord } from '../../../tasks/task';

const ACCOUNT = '555555555555';
let store: SqliteTaskStore;
let ctx: ActionContext;
let deleted: string[];

const bytes = { bucket: 'imaging-images', key: 'images/import-ami-0000000000000000a/attempt-1/disk.raw', size: 3 * 1024 ** 3 + 5 };
const createdAt = new Date().toISOString();

beforeEach(async () => {
  store = SqliteTaskStore.open(':memory:');
  deleted = [];
  ctx = {
    caller: { accountId: ACCOUNT, accessKeyId: 'AKID' },
    tasks: store,
    publish: async () => undefined,
    region: 'us-east-1',
    allowedObjectHosts: [],
    taskLifetimeMs: 60_000,
    now: () => new Date(),
    deleteImageObject: async (bucket, key) => void deleted.push(`${bucket}/${key}`),
  };
  const snapshot: SnapshotRecord = { id: 'snap-0000000000000000a', kind: 'snapshot', accountId: ACCOUNT, taskId: 'import-ami-0000000000000000a', sizeGiB: 4, image: bytes, createdAt };
  const image: ImageRecord = {
    id: 'ami-0000000000000000a', kind: 'image', accountId: ACCOUNT, taskId: 'import-ami-0000000000000000a', name: 'imported', architecture: 'x86_64', bootMode: 'uefi',
    rootDeviceName: '/dev/xvda', snapshotIds: [snapshot.id], sizeGiB: 4, createdAt, tags: [{ key: 'team', value: 'ops' }],
  };
  await store.putResource(snapshot);
  await store.putResource(image);
});
afterEach(() => store.close());

const params = (entries: Record<string, string>) => new QueryParams(Object.entries(entries));
const call = (action: string, entries: Record<string, string>) => runAction(action, params(entries), ctx) as Promise<any>;
const copyOf = (extra: Record<string, string> = {}) => call('CopyImage', { SourceImageId: 'ami-0000000000000000a', SourceRegion: 'us-east-1', Name: 'the copy', ...extra });

test('an EBS-backed image is copied as EC2 copies it: a new ami- and a new snapshot sharing the bytes; CopyImageTags carries the tags over', async () => {
  const { imageId } = await copyOf({ CopyImageTags: 'true' });
  const copy = (await store.getResource(imageId)) as ImageRecord;
  expect(copy).toMatchObject({ kind: 'image', name: 'the copy', rootDeviceName: '/dev/xvda', bootMode: 'uefi', state: 'available', rootDeviceType: 'ebs', sizeGiB: 4, tags: [{ key: 'team', value: 'ops' }] });
  expect(copy.snapshotIds).toHaveLength(1);
  expect(copy.snapshotIds[0]).not.toBe('snap-0000000000000000a');
  const snapshot = (await store.getResource(copy.snapshotIds[0])) as SnapshotRecord;
  expect([snapshot.image, snapshot.description]).toEqual([bytes, `Copied for DestinationAmi ${imageId} from SourceAmi ami-0000000000000000a for SourceSnapshot snap-0000000000000000a`]);
});

test('bytes shared by a copy are removed with the last record naming them, whichever goes first', async () => {
  const { imageId } = await copyOf();
  const copySnapshot = ((await store.getResource(imageId)) as ImageRecord).snapshotIds[0];
  await call('DeregisterImage', { ImageId: 'ami-0000000000000000a', DeleteAssociatedSnapshots: 'true' });
  expect(await store.getResource('snap-0000000000000000a')).toBeUndefined();
  expect(deleted).toEqual([]);
  await call('DeregisterImage', { ImageId: imageId });
  expect(deleted).toEqual([]);
  await call('DeleteSnapshot', { SnapshotId: copySnapshot });
  expect(deleted).toEqual([`${bytes.bucket}/${bytes.key}`]);
});

test('a source deregistered between the checks and the copy takes the copy back: InvalidAMIID.NotFound, nothing left', async () => {
  const input = await copyImage.validate(params({ SourceImageId: 'ami-0000000000000000a', SourceRegion: 'us-east-1', Name: 'raced' }), ctx);
  await call('DeregisterImage', { ImageId: 'ami-0000000000000000a' });
  await expect(copyImage.run(input, ctx)).rejects.toMatchObject({ code: 'InvalidAMIID.NotFound' });
  expect((await store.listResources({ kind: 'image' })).map((r) => r.id)).toEqual([]);
  expect((await store.listResources({ kind: 'snapshot' })).map((r) => r.id)).toEqual(['snap-0000000000000000a']);
});

test('DryRun checks and makes nothing; a missing Name or SourceRegion is MissingParameter', async () => {
  await expect(copyOf({ DryRun: 'true' })).rejects.toMatchObject({ code: 'DryRunOperation' });
  expect((await store.listResources({ kind: 'image' })).length).toBe(1);
  await expect(call('CopyImage', { SourceImageId: 'ami-0000000000000000a', SourceRegion: 'us-east-1' })).rejects.toMatchObject({ code: 'MissingParameter' });
  await expect(call('CopyImage', { SourceImageId: 'ami-0000000000000000a', Name: 'x y z' })).rejects.toMatchObject({ code: 'MissingParameter' });
  await expect(copyOf({ DestinationAvailabilityZone: 'us-east-1a' })).rejects.toMatchObject({ code: 'InvalidParameterCombination' });
});
