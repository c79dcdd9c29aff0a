/**
 * ImportImage, ImportSnapshot, DescribeImport*Tasks and CancelImportTask through `imaging serve`
 * in-process, driven by boto3 and @aws-sdk/client-ec2: every format the toolkit reads, made by
 * qemu-img from one bootable Debian-shaped disk, lands in the image store with the bytes qemu-img
 * makes of it; a hostile file ends deleted with a
 * ClientError; tokens, filters, paging and accounts behave as EC2's do.
 */
import { execFileSync } from 'child_process';
import { readFileSync } from 'fs';
import { join } from 'path';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { CancelImportTaskCommand, DescribeImportSnapshotTasksCommand, ImportImageCommand, ImportSnapshotCommand } from '@aws-sdk/client-ec2';
import type { RunningService } from '../../cli/serve';
import { createAccount } from '../../gateway/accounts';
import { qemuImg, qemuToRaw, tempDir } from '../helpers/disk-corpus';
import { makeSystemDisk } from '../helpers/guest-images';
import { boto3Call, boto3Calls, boto3Wait, sdkClient, type Ec2Credentials } from '../helpers/ec2-clients';
import { clientFor, objectBytes, sha256, startTestService, waitForImportTask, type Endpoints } from './import-driver';

let service: RunningService;
let endpoints: Endpoints;
let dir: string;
let disk: { path: string; size: number };
const BUCKET = 'import-image-bucket';

beforeAll(async () => {
  dir = tempDir('e2e-import-image-');
  // A bootable Debian-shaped disk (BIOS and UEFI, x86_64): the validate stage refuses an image without an OS.
  disk = makeSystemDisk(dir);
  ({ service, endpoints } = await startTestService(dir));
  const { s3 } = await clientFor(endpoints);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
}, 60_000);

afterAll(async () => {
  await service?.stop();
});

async function put(key: string, path: string): Promise<void> {
  const { s3 } = await clientFor(endpoints);
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: readFileSync(path) }));
}

const waitForImport = (op: 'DescribeImportImageTasks' | 'DescribeImportSnapshotTasks', taskId: string, creds: Ec2Credentials = endpoints.creds): Promise<any> =>
  waitForImportTask(endpoints, op, taskId, { creds });

async function storedBytesOf(taskId: string): Promise<Buffer> {
  const doc = await service.tasks.get(taskId);
  const image = doc!.artifacts.image!;
  return objectBytes(service.s3, image.bucket, image.key);
}

/** qemu-img's raw output of the disk inside an OVA (qemu-img does not open OVAs): tar out the VMDK first. */
function ovaReference(ova: string): Buffer {
  const out = join(dir, 'ova-extracted');
  execFileSync('mkdir', ['-p', out]);
  execFileSync('tar', ['-xf', ova, '-C', out]);
  const vmdk = execFileSync('tar', ['-tf', ova], { encoding: 'utf8' }).split('\n').find((name) => name.endsWith('.vmdk'));
  if (!vmdk) throw new Error('the OVA holds no VMDK');
  return qemuToRaw(join(out, vmdk), join(out, 'ova.ref.raw'));
}

/** Each format the toolkit reads, made from the same raw disk; QCOW2 is our extension to EC2's list. */
function corpus(): { format: string; path: string; reference: Buffer }[] {
  const make = (format: string, name: string, args: string[]) => {
    const path = join(dir, name);
    qemuImg('convert', '-f', 'raw', ...args, disk.path, path);
    return { format, path, reference: qemuToRaw(path, join(dir, `${name}.ref.raw`)) };
  };
  const ova = join(dir, 'disk.ova');
  execFileSync('node', [join(__dirname, '../../dist/cli/main.js'), 'convert', disk.path, ova, '-O', 'ova', '--no-progress']);
  return [
    { format: 'RAW', path: disk.path, reference: readFileSync(disk.path) },
    make('VMDK', 'disk.vmdk', ['-O', 'vmdk', '-o', 'subformat=streamOptimized']),
    make('VHD', 'disk.vhd', ['-O', 'vpc']),
    make('VHDX', 'disk.vhdx', ['-O', 'vhdx']),
    make('QCOW2', 'disk.qcow2', ['-O', 'qcow2']),
    { format: 'OVA', path: ova, reference: ovaReference(ova) },
  ];
}

test('boto3: ImportImage of every format completes with an image, a snapshot and the bytes qemu-img makes', async () => {
  for (const { format, path, reference } of corpus()) {
    const key = `corpus/${format.toLowerCase()}`;
    await put(key, path);
    const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportImage', {
      Description: `corpus ${format}`,
      Architecture: 'x86_64',
      Platform: 'Linux',
      BootMode: 'legacy-bios',
      LicenseType: 'BYOL',
      DiskContainers: [{ Description: `disk ${format}`, Format: format, UserBucket: { S3Bucket: BUCKET, S3Key: key } }],
      TagSpecifications: [{ ResourceType: 'import-image-task', Tags: [{ Key: 'format', Value: format }] }],
    });
    expect(out.ImportTaskId).toMatch(/^import-ami-[0-9a-f]{17}$/);
    expect(out).toMatchObject({ Status: 'active', Architecture: 'x86_64', Platform: 'Linux', LicenseType: 'BYOL', Description: `corpus ${format}` });
    expect(out.SnapshotDetails[0]).toMatchObject({ Format: format, UserBucket: { S3Bucket: BUCKET, S3Key: key }, Description: `disk ${format}` });
    const done = await waitForImport('DescribeImportImageTasks', out.ImportTaskId);
    expect([format, done.Status, done.StatusMessage]).toEqual([format, 'completed', undefined]);
    expect(done.ImageId).toMatch(/^ami-[0-9a-f]{17}$/);
    expect(done.SnapshotDetails[0].SnapshotId).toMatch(/^snap-[0-9a-f]{17}$/);
    expect(done.SnapshotDetails[0].Status).toBe('completed');
    expect(done.SnapshotDetails[0].DiskImageSize).toBe(readFileSync(path).length);
    expect(done.Tags).toEqual([{ Key: 'format', Value: format }]);
    expect(done.BootMode).toBe('legacy-bios');
    const stored = await storedBytesOf(out.ImportTaskId);
    expect([format, stored.length, sha256(stored)]).toEqual([format, reference.length, sha256(reference)]);
  }
}, 900_000);

test('boto3: an ImportImage of a hostile file (QCOW2 with a backing file) ends deleted with a ClientError', async () => {
  const hostile = join(dir, 'hostile.qcow2');
  qemuImg('create', '-f', 'qcow2', '-b', disk.path, '-F', 'raw', hostile);
  await put('hostile.qcow2', hostile);
  const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportImage', {
    DiskContainers: [{ Format: 'QCOW2', UserBucket: { S3Bucket: BUCKET, S3Key: 'hostile.qcow2' } }],
  });
  const done = await waitForImport('DescribeImportImageTasks', out.ImportTaskId);
  expect(done.Status).toBe('deleted');
  expect(done.StatusMessage).toMatch(/^ClientError: .*backing/i);
  expect(done.ImageId).toBeUndefined();
  // A missing object fails at once, with the reason AWS gives.
  const missing = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportImage', {
    DiskContainers: [{ Format: 'RAW', UserBucket: { S3Bucket: BUCKET, S3Key: 'no-such-object' } }],
  });
  const gone = await waitForImport('DescribeImportImageTasks', missing.ImportTaskId);
  expect(gone).toMatchObject({ Status: 'deleted' });
  expect(gone.StatusMessage).toMatch(/^ClientError: Disk validation failed \[We do not have access to the given resource\. Reason 404 Not Found\]/);
}, 600_000);

test('@aws-sdk/client-ec2: ImportSnapshot from a Url, DescribeImportSnapshotTasks, the snapshot-imported waiter', async () => {
  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
  await put('snap.vmdk', join(dir, 'disk.vmdk'));
  const url = `${endpoints.s3}/${BUCKET}/snap.vmdk`;
  const created = await ec2.send(new ImportSnapshotCommand({
    Description: 'snapshot by url',
    DiskContainer: { Format: 'VMDK', Url: `s3://${BUCKET}/snap.vmdk`, Description: 'the disk' },
    TagSpecifications: [{ ResourceType: 'import-snapshot-task', Tags: [{ Key: 'k', Value: 'v' }] }],
  }));
  expect(created.ImportTaskId).toMatch(/^import-snap-[0-9a-f]{17}$/);
  expect(created.SnapshotTaskDetail).toMatchObject({ Format: 'VMDK', Status: 'active', Description: 'the disk', UserBucket: { S3Bucket: BUCKET, S3Key: 'snap.vmdk' } });
  await waitForImport('DescribeImportSnapshotTasks', created.ImportTaskId!);
  // botocore's snapshot_imported waiter recognises the finished task (polled above: a waiter polling
  // a loaded machine for minutes only measures the machine).
  await boto3Wait(endpoints.ec2, endpoints.creds, 'snapshot_imported', { ImportTaskIds: [created.ImportTaskId] }, { delaySeconds: 1, maxAttempts: 3 });
  const described = await ec2.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [created.ImportTaskId!] }));
  const task = described.ImportSnapshotTasks![0];
  expect(task.SnapshotTaskDetail).toMatchObject({ Status: 'completed', Format: 'VMDK', Encrypted: false });
  expect(task.SnapshotTaskDetail!.SnapshotId).toMatch(/^snap-[0-9a-f]{17}$/);
  expect(task.Tags).toEqual([{ Key: 'k', Value: 'v' }]);
  // An http(s) Url of the service's object storage is read as it is (s3rver serves public reads).
  const byHttp = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportSnapshot', { DiskContainer: { Format: 'VMDK', Url: url } });
  expect(byHttp.SnapshotTaskDetail.Url).toBe(url);
  // A Url elsewhere is refused before any task exists.
  await expect(boto3Call(endpoints.ec2, endpoints.creds, 'ImportSnapshot', { DiskContainer: { Format: 'VMDK', Url: 'http://169.254.169.254/latest/x' } }))
    .rejects.toMatchObject({ code: 'InvalidParameterValue' });
}, 600_000);

test('ClientToken: same token and parameters give the same task; other parameters are IdempotentParameterMismatch', async () => {
  const params = { ClientToken: 'token-1', DiskContainers: [{ Format: 'RAW', UserBucket: { S3Bucket: BUCKET, S3Key: 'corpus/raw' } }] };
  const [first, again, other] = await boto3Calls(endpoints.ec2, [
    { creds: endpoints.creds, operation: 'ImportImage', params },
    { creds: endpoints.creds, operation: 'ImportImage', params },
    { creds: endpoints.creds, operation: 'ImportImage', params: { ...params, Description: 'different' } },
  ]);
  expect(first.ok && again.ok).toBe(true);
  expect((again as any).response.ImportTaskId).toBe((first as any).response.ImportTaskId);
  expect(other).toMatchObject({ ok: false, error: { code: 'IdempotentParameterMismatch' } });
  await waitForImport('DescribeImportImageTasks', (first as any).response.ImportTaskId);
}, 600_000);

test('errors as EC2 answers them, and DryRun', async () => {
  const c = endpoints.creds;
  const disk1 = { Format: 'RAW', UserBucket: { S3Bucket: BUCKET, S3Key: 'corpus/raw' } };
  const outcomes = await boto3Calls(endpoints.ec2, [
    { creds: c, operation: 'ImportImage', params: { DiskContainers: [disk1], DryRun: true } },
    { creds: c, operation: 'ImportImage', params: { DiskContainers: [disk1], Encrypted: true } },
    { creds: c, operation: 'ImportImage', params: {} },
    { creds: c, operation: 'ImportImage', params: { DiskContainers: [{ ...disk1, Format: 'ISO' }] } },
    { creds: c, operation: 'ImportImage', params: { DiskContainers: [{ Format: 'RAW', UserBucket: { S3Bucket: BUCKET } }] } },
    { creds: c, operation: 'ImportImage', params: { DiskContainers: [disk1], Architecture: 'sparc' } },
    { creds: c, operation: 'DescribeImportImageTasks', params: { ImportTaskIds: ['import-ami-0123456789abcdef0'] } },
    { creds: c, operation: 'DescribeImportImageTasks', params: { ImportTaskIds: ['not-a-task'] } },
    { creds: c, operation: 'DescribeImportImageTasks', params: { Filters: [{ Name: 'colour', Values: ['x'] }] } },
    { creds: c, operation: 'DescribeImportImageTasks', params: { NextToken: 'bm9wZQ' } },
    { creds: c, operation: 'CancelImportTask', params: { ImportTaskId: 'import-ami-0123456789abcdef0' } },
    { creds: c, operation: 'DescribeImportSnapshotTasks', params: { DryRun: true } },
  ]);
  const codes = outcomes.map((o) => (o.ok ? 'ok' : o.error.code));
  expect(codes).toEqual([
    'DryRunOperation', 'InvalidParameterValue', 'MissingParameter', 'InvalidParameterValue', 'MissingParameter', 'InvalidParameterValue',
    'InvalidConversionTaskId', 'InvalidConversionTaskId.Malformed', 'InvalidParameterValue', 'InvalidPaginationToken', 'InvalidConversionTaskId', 'DryRunOperation',
  ]);
  expect((outcomes[1] as any).error.message).toMatch(/Encrypted imports are not supported/);
});

test('filters and paging: task-state, tag:, MaxResults/NextToken', async () => {
  const all = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImportImageTasks', {});
  const ids = all.ImportImageTasks.map((t: any) => t.ImportTaskId);
  expect(ids.length).toBeGreaterThanOrEqual(6);
  const paged: string[] = [];
  let token: string | undefined;
  do {
    const out = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImportImageTasks', { MaxResults: 2, ...(token ? { NextToken: token } : {}) });
    expect(out.ImportImageTasks.length).toBeLessThanOrEqual(2);
    paged.push(...out.ImportImageTasks.map((t: any) => t.ImportTaskId));
    token = out.NextToken;
  } while (token);
  expect(paged).toEqual(ids);
  const deleted = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImportImageTasks', { Filters: [{ Name: 'task-state', Values: ['deleted'] }] });
  expect(deleted.ImportImageTasks.length).toBeGreaterThanOrEqual(2);
  expect(deleted.ImportImageTasks.every((t: any) => t.Status === 'deleted')).toBe(true);
  const tagged = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImportImageTasks', { Filters: [{ Name: 'tag:format', Values: ['VH*'] }] });
  expect(tagged.ImportImageTasks.map((t: any) => t.Tags[0].Value).sort()).toEqual(['VHD', 'VHDX']);
});

test('CancelImportTask: an active task ends deleted; a finished one is IncorrectState', async () => {
  // Both calls from this process, milliseconds apart, so the task is still active when the cancel arrives.
  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
  const out = await ec2.send(new ImportImageCommand({ DiskContainers: [{ Format: 'QCOW2', UserBucket: { S3Bucket: BUCKET, S3Key: 'corpus/qcow2' } }] }));
  const cancelled = await ec2.send(new CancelImportTaskCommand({ ImportTaskId: out.ImportTaskId, CancelReason: 'changed my mind' }));
  expect(cancelled).toMatchObject({ ImportTaskId: out.ImportTaskId, PreviousState: 'active' });
  expect(['deleting', 'deleted']).toContain(cancelled.State);
  const done = await waitForImport('DescribeImportImageTasks', out.ImportTaskId!);
  expect(done).toMatchObject({ Status: 'deleted', StatusMessage: 'changed my mind' });
  await expect(boto3Call(endpoints.ec2, endpoints.creds, 'CancelImportTask', { ImportTaskId: out.ImportTaskId })).rejects.toMatchObject({ code: 'IncorrectState' });
}, 600_000);

test("two accounts: B cannot see or cancel A's import tasks; an admin's `verbose` sees both", async () => {
  const bob = await createAccount(service.tasks, 'bob-import');
  const b: Ec2Credentials = { accessKeyId: bob.accessKeyId, secretAccessKey: bob.secretAccessKey };
  const mine = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImportImageTasks', {});
  const aTask = mine.ImportImageTasks[0].ImportTaskId;
  const outcomes = await boto3Calls(endpoints.ec2, [
    { creds: b, operation: 'DescribeImportImageTasks', params: {} },
    { creds: b, operation: 'DescribeImportImageTasks', params: { ImportTaskIds: [aTask] } },
    { creds: b, operation: 'CancelImportTask', params: { ImportTaskId: aTask } },
    { creds: b, operation: 'DescribeImportImageTasks', params: { ImportTaskIds: ['verbose'] } },
  ]);
  expect(outcomes[0]).toMatchObject({ ok: true, response: { ImportImageTasks: [] } });
  expect(outcomes[1]).toMatchObject({ ok: false, error: { code: 'InvalidConversionTaskId' } });
  expect(outcomes[2]).toMatchObject({ ok: false, error: { code: 'InvalidConversionTaskId' } });
  // `verbose` from a non-admin is just a malformed id.
  expect(outcomes[3]).toMatchObject({ ok: false, error: { code: 'InvalidConversionTaskId.Malformed' } });
  const bobs = await boto3Call(endpoints.ec2, b, 'ImportImage', { DiskContainers: [{ Format: 'RAW', UserBucket: { S3Bucket: BUCKET, S3Key: 'corpus/raw' } }] });
  await waitForImport('DescribeImportImageTasks', bobs.ImportTaskId, b);
  const everything = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImportImageTasks', { ImportTaskIds: ['verbose'] });
  const everyId = everything.ImportImageTasks.map((t: any) => t.ImportTaskId);
  expect(everyId).toContain(bobs.ImportTaskId);
  expect(everyId).toContain(aTask);
  await expect(boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImportImageTasks', { ImportTaskIds: [bobs.ImportTaskId] })).rejects.toMatchObject({ code: 'InvalidConversionTaskId' });
}, 600_000);
