/**
 * ExportImage, DescribeExportImageTasks and CancelExportTask through `imaging serve` in-process:
 * a bootable guest disk made with sfdisk + mkfs.ext4 -d is imported as a streamOptimized VMDK
 * (ImportImage through boto3), then exported with boto3, the AWS CLI v2 and the `imaging` CLI as
 * VMDK, VHD (dynamic, and fixed through the extension) and RAW into the caller's bucket, under
 * `<S3Prefix><exportImageTaskId>.<format>`. qemu-img must accept every exported file and convert
 * it back to the imported raw bytes exactly; an exported VMDK imported again through ImportImage
 * gives the same bytes. Another account can neither export the image nor see or cancel the
 * task; tokens, tags, filters and paging behave as EC2's do.
 */
import { randomBytes } from 'crypto';
import { readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { paginateDescribeExportImageTasks } from '@aws-sdk/client-ec2';
import type { RunningService } from '../../cli/serve';
import { createAccount } from '../../gateway/accounts';
import type { ImageRecord, SnapshotRecord } from '../../tasks/task';
import { qemuImg, qemuToRaw, tempDir } from '../helpers/disk-corpus';
import { awsCli, awsCliPath, boto3Call, boto3Calls, sdkClient, type Ec2Credentials } from '../helpers/ec2-clients';
import { expectSameDisk, makeGuestDisk, vhdDiskType, waitForExportEnd } from './export-driver';
import { objectBytes, runCli, sha256, startTestService, type Endpoints } from './import-driver';

jest.setTimeout(180_000);

const SOURCE_BUCKET = 'export-image-source';
const BUCKET = 'export-image-out';
let service: RunningService;
let endpoints: Endpoints;
let dir: string;
let reference: Buffer;
let imageId: string;

/** ImportImage through boto3 of s3://bucket/key; resolves to the completed task (polled with the SDK). */
async function importImage(bucket: string, key: string, format: string): Promise<any> {
  const started = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportImage', {
    Architecture: 'x86_64',
    DiskContainers: [{ Format: format, UserBucket: { S3Bucket: bucket, S3Key: key } }],
  });
  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
  const { DescribeImportImageTasksCommand } = await import('@aws-sdk/client-ec2');
  const deadline = Date.now() + 150_000;
  try {
    for (;;) {
      const task: any = (await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [started.ImportTaskId] }))).ImportImageTasks![0];
      if (!['active', 'deleting'].includes(task.Status)) return task;
      if (Date.now() > deadline) throw new Error(`${started.ImportTaskId} still ${task.Status} (${task.StatusMessage})`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    ec2.destroy();
  }
}

beforeAll(async () => {
  dir = tempDir('e2e-export-image-');
  const disk = makeGuestDisk(dir);
  reference = qemuToRaw(disk.vmdk, join(dir, 'reference.raw'));
  expect(reference.equals(readFileSync(disk.raw))).toBe(true);
  ({ service, endpoints } = await startTestService(dir));
  await service.s3.send(new CreateBucketCommand({ Bucket: SOURCE_BUCKET }));
  await service.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await service.s3.send(new PutObjectCommand({ Bucket: SOURCE_BUCKET, Key: 'guest.vmdk', Body: readFileSync(disk.vmdk) }));
  const imported = await importImage(SOURCE_BUCKET, 'guest.vmdk', 'VMDK');
  expect([imported.Status, imported.StatusMessage]).toEqual(['completed', undefined]);
  imageId = imported.ImageId;
});

afterAll(async () => {
  await service?.stop();
});

/** ExportImage through boto3, waited for; the object downloaded next to the task. */
async function exportWithBoto3(params: Record<string, unknown>, name: string) {
  const created = await boto3Call(endpoints.ec2, endpoints.creds, 'ExportImage', { ImageId: imageId, S3ExportLocation: { S3Bucket: BUCKET, S3Prefix: 'exports/' }, ...params });
  expect(created.ExportImageTaskId).toMatch(/^export-ami-[0-9a-f]{17}$/);
  expect(created).toMatchObject({ ImageId: imageId, Status: 'active', S3ExportLocation: { S3Bucket: BUCKET, S3Prefix: 'exports/' } });
  await waitForExportEnd(endpoints.ec2, endpoints.creds, created.ExportImageTaskId);
  const done = (await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeExportImageTasks', { ExportImageTaskIds: [created.ExportImageTaskId] })).ExportImageTasks[0];
  expect([done.Status, done.StatusMessage]).toEqual(['completed', undefined]);
  const key = `exports/${created.ExportImageTaskId}.${String(params.DiskImageFormat).toLowerCase()}`;
  const path = join(dir, name);
  writeFileSync(path, await objectBytes(service.s3, BUCKET, key));
  return { path, created, done };
}

test('boto3: ExportImage as VMDK (streamOptimized), VHD (dynamic) and RAW converts back to the imported bytes', async () => {
  const vmdk = await exportWithBoto3({ DiskImageFormat: 'VMDK', Description: 'e2e vmdk', RoleName: 'vmimport' }, 'image.vmdk');
  expect(vmdk.created).toMatchObject({ DiskImageFormat: 'VMDK', Description: 'e2e vmdk', RoleName: 'vmimport' });
  expect(JSON.parse(qemuImg('info', '--output=json', '-f', 'vmdk', vmdk.path))['format-specific'].data['create-type']).toBe('streamOptimized');
  expectSameDisk(vmdk.path, 'vmdk', reference);

  const vhd = await exportWithBoto3({ DiskImageFormat: 'VHD' }, 'image.vhd');
  expect(vhdDiskType(vhd.path)).toBe('dynamic');
  expectSameDisk(vhd.path, 'vpc', reference);

  const raw = await exportWithBoto3({ DiskImageFormat: 'RAW' }, 'image.raw');
  expectSameDisk(raw.path, 'raw', reference);
});

test('an exported VMDK imported again through ImportImage gives the same bytes', async () => {
  const { created } = await exportWithBoto3({ DiskImageFormat: 'VMDK' }, 'again.vmdk');
  const again = await importImage(BUCKET, `exports/${created.ExportImageTaskId}.vmdk`, 'VMDK');
  expect(again.Status).toBe('completed');
  expect(again.ImageId).not.toBe(imageId);
  const image = (await service.tasks.getResource(again.ImageId)) as ImageRecord;
  const snapshot = (await service.tasks.getResource(image.snapshotIds[0])) as SnapshotRecord;
  const stored = await objectBytes(service.s3, snapshot.image.bucket, snapshot.image.key);
  expect(stored.length).toBe(reference.length);
  expect(sha256(stored)).toBe(sha256(reference));
});

const cli = awsCliPath();
(cli ? test : test.skip)('AWS CLI v2: export-image as VMDK, VHD and RAW; describe-export-image-tasks', async () => {
  for (const format of ['VMDK', 'VHD', 'RAW'] as const) {
    const created = await awsCli(cli!, endpoints.ec2, endpoints.creds, [
      'export-image', '--image-id', imageId, '--disk-image-format', format, '--s3-export-location', `S3Bucket=${BUCKET},S3Prefix=cli/`,
    ]);
    expect(created.stderr).toBe('');
    const task = JSON.parse(created.stdout);
    expect(task).toMatchObject({ ImageId: imageId, DiskImageFormat: format, S3ExportLocation: { S3Bucket: BUCKET, S3Prefix: 'cli/' } });
    await waitForExportEnd(endpoints.ec2, endpoints.creds, task.ExportImageTaskId);
    const described = await awsCli(cli!, endpoints.ec2, endpoints.creds, ['describe-export-image-tasks', '--export-image-task-ids', task.ExportImageTaskId]);
    expect(JSON.parse(described.stdout).ExportImageTasks[0]).toMatchObject({ ExportImageTaskId: task.ExportImageTaskId, Status: 'completed', ImageId: imageId });
    const path = join(dir, `cli-image.${format.toLowerCase()}`);
    writeFileSync(path, await objectBytes(service.s3, BUCKET, `cli/${task.ExportImageTaskId}.${format.toLowerCase()}`));
    if (format === 'VHD') expect(vhdDiskType(path)).toBe('dynamic');
    expectSameDisk(path, format === 'VHD' ? 'vpc' : format === 'VMDK' ? 'vmdk' : 'raw', reference);
  }
});

test('imaging CLI: export-image --vhd-type fixed --wait --json, describe-export-image-tasks --json', async () => {
  const { stdout } = await runCli(endpoints, [
    'export-image', imageId, '--disk-image-format', 'VHD', '--vhd-type', 'fixed', '--bucket', BUCKET, '--prefix', 'imaging-cli/',
    '--tag', 'purpose=e2e', '--wait', '--json',
  ]);
  const task = JSON.parse(stdout);
  expect(task).toMatchObject({ status: 'completed', imageId, diskImageFormat: 'VHD', s3Bucket: BUCKET, s3Prefix: 'imaging-cli/', tags: { purpose: 'e2e' } });
  expect(task.s3Key).toBe(`imaging-cli/${task.exportImageTaskId}.vhd`);
  const described = JSON.parse((await runCli(endpoints, ['describe-export-image-tasks', task.exportImageTaskId, '--json'])).stdout);
  expect(described).toEqual([task]);
  const path = join(dir, 'cli-fixed.vhd');
  writeFileSync(path, await objectBytes(service.s3, BUCKET, task.s3Key));
  // A fixed VHD is the disk followed by a 512-byte footer.
  expect(readFileSync(path).length).toBe(reference.length + 512);
  expect(vhdDiskType(path)).toBe('fixed');
  expectSameDisk(path, 'vpc', reference);
});

test('another account can neither export the image nor see or cancel its export; an image with no snapshot is NotExportable', async () => {
  const bob = await createAccount(service.tasks, 'bob-export');
  const bobCreds: Ec2Credentials = { accessKeyId: bob.accessKeyId, secretAccessKey: bob.secretAccessKey };
  // An export of ours for bob to look for.
  const running = await boto3Call(endpoints.ec2, endpoints.creds, 'ExportImage', { ImageId: imageId, DiskImageFormat: 'VMDK', S3ExportLocation: { S3Bucket: BUCKET, S3Prefix: 'watched/' } });
  // An image of this account whose snapshot was deleted.
  const orphan = 'ami-0dddddddddddddddd';
  await service.tasks.putResource({
    id: orphan, kind: 'image', accountId: service.credentials.accountId, taskId: 'import-ami-0dddddddddddddddd', name: 'orphan', architecture: 'x86_64',
    rootDeviceName: '/dev/sda1', snapshotIds: ['snap-0dddddddddddddddd'], sizeGiB: 1, createdAt: new Date().toISOString(),
  });
  const exportOf = (creds: Ec2Credentials, id: string) => ({ creds, operation: 'ExportImage', params: { ImageId: id, DiskImageFormat: 'RAW', S3ExportLocation: { S3Bucket: BUCKET } } });
  const outcomes = await boto3Calls(endpoints.ec2, [
    exportOf(bobCreds, imageId),
    exportOf(bobCreds, 'ami-0123456789abcdef0'),
    exportOf(endpoints.creds, 'ami-nothex'),
    exportOf(endpoints.creds, orphan),
    { creds: bobCreds, operation: 'DescribeExportImageTasks', params: { ExportImageTaskIds: [running.ExportImageTaskId] } },
    { creds: bobCreds, operation: 'CancelExportTask', params: { ExportTaskId: running.ExportImageTaskId } },
    { creds: bobCreds, operation: 'DescribeExportImageTasks', params: {} },
    { creds: endpoints.creds, operation: 'ExportImage', params: { ImageId: imageId, DiskImageFormat: 'RAW', S3ExportLocation: { S3Bucket: 'Not_A_Bucket' } } },
  ]);
  const codes = outcomes.map((o) => (o.ok ? 'ok' : o.error.code));
  expect(codes).toEqual([
    'InvalidAMIID.NotFound', 'InvalidAMIID.NotFound', 'InvalidAMIID.Malformed', 'NotExportable',
    'InvalidExportTaskID.NotFound', 'InvalidExportTaskID.NotFound', 'ok', 'InvalidParameterValue',
  ]);
  expect((outcomes[6] as { response: any }).response.ExportImageTasks ?? []).toEqual([]);
  // Bob's cancel changed nothing: the export ran to its end.
  const ended = await waitForExportEnd(endpoints.ec2, endpoints.creds, running.ExportImageTaskId);
  expect(ended.Status).toBe('completed');
  expect((await service.tasks.get(running.ExportImageTaskId))!.cancelRequested).toBeUndefined();
});

test('ClientToken, tags, the task-state filter and paging', async () => {
  const token = `token-${randomBytes(4).toString('hex')}`;
  const params = {
    ImageId: imageId, DiskImageFormat: 'RAW', ClientToken: token, S3ExportLocation: { S3Bucket: BUCKET, S3Prefix: 'token/' },
    TagSpecifications: [{ ResourceType: 'export-image-task', Tags: [{ Key: 'team', Value: 'imaging' }] }],
  };
  const first = await boto3Call(endpoints.ec2, endpoints.creds, 'ExportImage', params);
  const again = await boto3Call(endpoints.ec2, endpoints.creds, 'ExportImage', params);
  expect(again.ExportImageTaskId).toBe(first.ExportImageTaskId);
  expect(first.Tags).toEqual([{ Key: 'team', Value: 'imaging' }]);
  await expect(boto3Call(endpoints.ec2, endpoints.creds, 'ExportImage', { ...params, DiskImageFormat: 'VMDK' })).rejects.toMatchObject({ code: 'IdempotentParameterMismatch' });
  await waitForExportEnd(endpoints.ec2, endpoints.creds, first.ExportImageTaskId);

  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
  try {
    const all: string[] = [];
    for await (const page of paginateDescribeExportImageTasks({ client: ec2, pageSize: 2 }, {})) {
      expect(page.ExportImageTasks!.length).toBeLessThanOrEqual(2);
      all.push(...page.ExportImageTasks!.map((t) => t.ExportImageTaskId!));
    }
    expect(new Set(all).size).toBe(all.length);
    expect(all).toContain(first.ExportImageTaskId);
    const tagged = (await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeExportImageTasks', { ExportImageTaskIds: [first.ExportImageTaskId] })).ExportImageTasks[0];
    expect(tagged.Tags).toEqual([{ Key: 'team', Value: 'imaging' }]);
    const completed = (await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeExportImageTasks', { Filters: [{ Name: 'task-state', Values: ['completed'] }] })).ExportImageTasks;
    expect(completed.map((t: any) => t.ExportImageTaskId)).toContain(first.ExportImageTaskId);
    expect(completed.every((t: any) => t.Status === 'completed')).toBe(true);
    const deleted = (await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeExportImageTasks', { Filters: [{ Name: 'task-state', Values: ['deleted'] }] })).ExportImageTasks;
    expect(deleted.every((t: any) => t.Status === 'deleted')).toBe(true);
    expect(completed.length + deleted.length).toBe(all.length);
  } finally {
    ec2.destroy();
  }
});
