/**
 * Issue 11, item 7: a per-account storage quota of the image store
 * (IMAGING_ACCOUNT_STORAGE_QUOTA_GIB). A small upload declaring a large disk is refused before
 * conversion writes anything, with a ClientError naming the quota; what an account already
 * stores counts; another account's usage does not; and the quota holds while two accounts import
 * at once (issue 16: per-account limits under concurrent imports).
 */
import { readFileSync, statSync } from 'fs';
import { join } from 'path';
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { RunningService } from '../../cli/serve';
import { createAccount, type NewAccount } from '../../gateway/accounts';
import { makeS3Client } from '../../toolkit/io/object-storage';
import { qemuImg, tempDir } from '../helpers/disk-corpus';
import { makeSystemDisk } from '../helpers/guest-images';
import { boto3Call, type Ec2Credentials } from '../helpers/ec2-clients';
import { fileSha256, objectBytes, sha256, startTestService, waitForImportTask, type Endpoints } from './import-driver';

const QUOTA_GIB = '0.08'; // 81.92 MiB: one 58 MiB disk fits, two do not
const IMAGES = 'imaging-images';

let service: RunningService;
let endpoints: Endpoints;
let alice: NewAccount;
let bob: NewAccount;
let carol: NewAccount;
let dave: NewAccount;
let raw: string;
let qcow2: string;

const credsOf = (account: NewAccount): Ec2Credentials => ({ accessKeyId: account.accessKeyId, secretAccessKey: account.secretAccessKey });

beforeAll(async () => {
  const dir = tempDir('storage-quota-');
  // A bootable system disk (58 MiB): the validate stage refuses an image without an OS.
  raw = makeSystemDisk(dir).path;
  // A 4 GiB virtual disk in a file of a few hundred KiB.
  qcow2 = join(dir, 'big.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', qcow2, '4G');
  ({ service, endpoints } = await startTestService(dir, { accountStorageQuotaGib: QUOTA_GIB }));
  alice = await createAccount(service.tasks, 'alice');
  bob = await createAccount(service.tasks, 'bob');
  carol = await createAccount(service.tasks, 'carol');
  dave = await createAccount(service.tasks, 'dave');
  for (const [account, bucket] of [[alice, 'alice-bucket'], [bob, 'bob-bucket'], [carol, 'carol-bucket'], [dave, 'dave-bucket']] as const) {
    const s3 = makeS3Client({ endpoint: service.s3Endpoint, region: 'us-east-1', forcePathStyle: true, ...credsOf(account) });
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'disk.raw', Body: readFileSync(raw) }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'big.qcow2', Body: readFileSync(qcow2) }));
    s3.destroy();
  }
}, 120_000);

afterAll(async () => {
  await service?.stop();
});

async function importImage(account: NewAccount, bucket: string, key: string, format: string): Promise<any> {
  const creds = credsOf(account);
  const out = await boto3Call(endpoints.ec2, creds, 'ImportImage', { DiskContainers: [{ Format: format, UserBucket: { S3Bucket: bucket, S3Key: key } }] });
  return waitForImportTask(endpoints, 'DescribeImportImageTasks', out.ImportTaskId, { creds, timeoutMs: 300_000, everyMs: 300 });
}

async function imageStoreKeysOf(taskId: string): Promise<string[]> {
  const listed = await service.s3.send(new ListObjectsV2Command({ Bucket: IMAGES, Prefix: `images/${taskId}` }));
  return (listed.Contents ?? []).map((o) => o.Key!);
}

test('a small upload declaring a 4 GiB disk is refused before conversion, naming the quota; nothing is written', async () => {
  expect(statSync(qcow2).size).toBeLessThan(1024 * 1024);
  const task = await importImage(alice, 'alice-bucket', 'big.qcow2', 'QCOW2');
  expect(task.Status).toBe('deleted');
  expect(task.StatusMessage).toBe(
    "ClientError: the image's virtual disk is 4 GiB, and this account already uses 0 bytes of the image store: together over the account's storage quota of 0.08 GiB (IMAGING_ACCOUNT_STORAGE_QUOTA_GIB); delete volumes or snapshots you no longer need, or ask the operator for a larger quota",
  );
  expect(await imageStoreKeysOf(task.ImportTaskId)).toEqual([]);
  const doc = await service.tasks.get(task.ImportTaskId);
  expect(doc!.bytesConverted).toBe(0);
}, 300_000);

test("what the account stores counts: alice's first disk fits, her second does not; bob's usage is his own", async () => {
  const first = await importImage(alice, 'alice-bucket', 'disk.raw', 'RAW');
  expect([first.Status, first.StatusMessage ?? '']).toEqual(['completed', '']);
  const doc = await service.tasks.get(first.ImportTaskId);
  expect(sha256(await objectBytes(service.s3, doc!.artifacts.image!.bucket, doc!.artifacts.image!.key))).toBe(fileSha256(raw));

  const second = await importImage(alice, 'alice-bucket', 'disk.raw', 'RAW');
  expect(second.Status).toBe('deleted');
  expect(second.StatusMessage).toMatch(/^ClientError: the image's virtual disk is 58\.01 MiB, and this account already uses 58\.01 MiB of the image store: together over the account's storage quota of 0\.08 GiB \(IMAGING_ACCOUNT_STORAGE_QUOTA_GIB\)/);
  expect(await imageStoreKeysOf(second.ImportTaskId)).toEqual([]);

  const bobs = await importImage(bob, 'bob-bucket', 'disk.raw', 'RAW');
  expect([bobs.Status, bobs.StatusMessage ?? '']).toEqual(['completed', '']);
}, 600_000);

test('two accounts importing at once: carol\'s two disks at once never pass her quota; dave, importing beside her, is not held back', async () => {
  const [first, second, daves] = await Promise.all([
    importImage(carol, 'carol-bucket', 'disk.raw', 'RAW'),
    importImage(carol, 'carol-bucket', 'disk.raw', 'RAW'),
    importImage(dave, 'dave-bucket', 'disk.raw', 'RAW'),
  ]);
  // Both of carol's may pass the check before writing (nothing stored yet); while they write, the
  // other's bytes count, so at most one completes and every other one fails naming the quota.
  const carols = [first, second];
  expect(carols.filter((t) => t.Status === 'completed').length).toBeLessThanOrEqual(1);
  for (const refused of carols.filter((t) => t.Status !== 'completed')) {
    expect(refused.Status).toBe('deleted');
    expect(refused.StatusMessage).toMatch(/over the account's storage quota of 0\.08 GiB \(IMAGING_ACCOUNT_STORAGE_QUOTA_GIB\)/);
    expect(await imageStoreKeysOf(refused.ImportTaskId)).toEqual([]);
  }
  expect([daves.Status, daves.StatusMessage ?? '']).toEqual(['completed', '']);
}, 600_000);
