/**
 * What imports create, through `imaging serve` in-process: DescribeImages / Snapshots / Volumes,
 * CreateTags / DescribeTags, DeregisterImage / DeleteSnapshot / DeleteVolume (freeing the bytes),
 * two accounts kept apart, the AWS CLI v2 (import-image … wait image-available), and the
 * administrator's `imaging account` / `imaging key` commands.
 */
import { execFile } from 'child_process';
import { readFileSync } from 'fs';
import { join } from 'path';
import { promisify } from 'util';
import { CreateBucketCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { DescribeImagesCommand, DescribeSnapshotsCommand, DescribeVolumesCommand, DeleteSnapshotCommand, CreateTagsCommand, DescribeTagsCommand } from '@aws-sdk/client-ec2';
import type { RunningService } from '../../cli/serve';
import { createAccount } from '../../gateway/accounts';
import { tempDir } from '../helpers/disk-corpus';
import { makeSystemDisk } from '../helpers/guest-images';
import { awsCli, awsCliPath, boto3Call, boto3Calls, sdkClient, type Ec2Credentials } from '../helpers/ec2-clients';
import { clientFor, startTestService, upload, waitForImportTask, waitForTask, type Endpoints } from './import-driver';

const execFileAsync = promisify(execFile);
let service: RunningService;
let endpoints: Endpoints;
let dir: string;
let disk: { path: string; size: number };
const BUCKET = 'resources-bucket';

async function importImageAndWait(creds: Ec2Credentials, key: string, extra: Record<string, unknown> = {}): Promise<any> {
  const out = await boto3Call(endpoints.ec2, creds, 'ImportImage', { DiskContainers: [{ Format: 'RAW', UserBucket: { S3Bucket: BUCKET, S3Key: key } }], ...extra });
  return waitForImportTask(endpoints, 'DescribeImportImageTasks', out.ImportTaskId, { creds });
}

beforeAll(async () => {
  dir = tempDir('e2e-resources-');
  // Bootable Debian-shaped disks (the validate stage refuses an image without an OS): x86_64 (the
  // default Architecture), and arm64 (UEFI) for the import that asks for Architecture arm64.
  disk = makeSystemDisk(dir);
  const arm64 = makeSystemDisk(dir, { name: 'arm64.raw', architecture: 'arm64' });
  ({ service, endpoints } = await startTestService(dir));
  const { s3 } = await clientFor(endpoints);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'disk.raw', Body: readFileSync(disk.path) }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'arm64.raw', Body: readFileSync(arm64.path) }));
}, 120_000);

afterAll(async () => {
  await service?.stop();
});

test('boto3 + @aws-sdk/client-ec2: an imported image, its snapshot, tags, filters, and deletion freeing the bytes', async () => {
  const task = await importImageAndWait(endpoints.creds, 'arm64.raw', {
    // The disk holds Linux: Platform Windows would fail validation (platform-mismatch).
    Description: 'web', Architecture: 'arm64', Platform: 'Linux', BootMode: 'uefi',
    TagSpecifications: [{ ResourceType: 'image', Tags: [{ Key: 'role', Value: 'web' }] }],
  });
  expect(task.Status).toBe('completed');
  const imageId = task.ImageId;
  const snapshotId = task.SnapshotDetails[0].SnapshotId;
  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);

  const images = await ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }));
  expect(images.Images![0]).toMatchObject({
    ImageId: imageId, State: 'available', Architecture: 'arm64', PlatformDetails: 'Linux/UNIX', Description: 'web', RootDeviceType: 'ebs', RootDeviceName: '/dev/sda1',
    BootMode: 'uefi', OwnerId: service.credentials.accountId, Tags: [{ Key: 'role', Value: 'web' }],
  });
  expect(images.Images![0].Platform).toBeUndefined(); // EC2 names only windows
  expect(images.Images![0].BlockDeviceMappings![0].Ebs).toMatchObject({ SnapshotId: snapshotId, VolumeSize: 1 });
  const snaps = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] }));
  expect(snaps.Snapshots![0]).toMatchObject({ SnapshotId: snapshotId, State: 'completed', VolumeSize: 1, OwnerId: service.credentials.accountId, Tags: [{ Key: 'role', Value: 'web' }] });

  await ec2.send(new CreateTagsCommand({ Resources: [snapshotId, task.ImportTaskId], Tags: [{ Key: 'env', Value: 'prod' }] }));
  const tags = await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: 'key', Values: ['env'] }] }));
  expect(tags.Tags!.map((t) => [t.ResourceId, t.ResourceType, t.Value]).sort()).toEqual([[task.ImportTaskId, 'import-image-task', 'prod'], [snapshotId, 'snapshot', 'prod']].sort());
  const byTag = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeSnapshots', { Filters: [{ Name: 'tag:env', Values: ['prod'] }] });
  expect(byTag.Snapshots.map((s: any) => s.SnapshotId)).toEqual([snapshotId]);
  const noneByTag = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImages', { Filters: [{ Name: 'tag:role', Values: ['db'] }] });
  expect(noneByTag.Images).toEqual([]);
  const byFilter = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImages', { Owners: ['self'], Filters: [{ Name: 'image-id', Values: [imageId] }, { Name: 'architecture', Values: ['arm64'] }] });
  expect(byFilter.Images.map((i: any) => i.ImageId)).toEqual([imageId]);

  // The snapshot backs the image: it cannot go first.
  await expect(ec2.send(new DeleteSnapshotCommand({ SnapshotId: snapshotId }))).rejects.toMatchObject({ name: 'InvalidSnapshot.InUse' });
  const doc = await service.tasks.get(task.ImportTaskId);
  const stored = doc!.artifacts.image!;
  const c = endpoints.creds;
  const outcomes = await boto3Calls(endpoints.ec2, [
    { creds: c, operation: 'DeregisterImage', params: { ImageId: imageId, DryRun: true } },
    { creds: c, operation: 'DeregisterImage', params: { ImageId: imageId } },
    { creds: c, operation: 'DescribeImages', params: { ImageIds: [imageId] } },
    { creds: c, operation: 'DeleteSnapshot', params: { SnapshotId: snapshotId } },
    { creds: c, operation: 'DescribeSnapshots', params: { SnapshotIds: [snapshotId] } },
    { creds: c, operation: 'DeleteSnapshot', params: { SnapshotId: 'snapshot-1' } },
    { creds: c, operation: 'DescribeImages', params: { ImageIds: ['ami-12'] } },
  ]);
  expect(outcomes.map((o) => (o.ok ? 'ok' : o.error.code))).toEqual(['DryRunOperation', 'ok', 'InvalidAMIID.NotFound', 'ok', 'InvalidSnapshot.NotFound', 'InvalidSnapshotID.Malformed', 'InvalidAMIID.Malformed']);
  await expect(service.s3.send(new HeadObjectCommand({ Bucket: stored.bucket, Key: stored.key }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
}, 600_000);

test('DescribeVolumes / DeleteVolume for an ImportVolume, paging with opaque tokens', async () => {
  const up = await upload(endpoints, disk.path, 'volume-bucket');
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportVolume', { Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: 1 }, AvailabilityZone: 'local-1a' });
    const done = await waitForTask(endpoints, out.ConversionTask.ConversionTaskId, 400_000);
    ids.push(done.ImportVolume.Volume.Id);
  }
  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
  const all = await ec2.send(new DescribeVolumesCommand({ VolumeIds: ids }));
  expect(all.Volumes!.map((v) => [v.VolumeId, v.Size, v.State, v.AvailabilityZone])).toEqual(ids.map((id) => [id, 1, 'available', 'local-1a']));
  const first = await ec2.send(new DescribeVolumesCommand({ MaxResults: 2, Filters: [{ Name: 'volume-id', Values: ids }] }));
  expect(first.Volumes).toHaveLength(2);
  const second = await ec2.send(new DescribeVolumesCommand({ MaxResults: 2, NextToken: first.NextToken, Filters: [{ Name: 'volume-id', Values: ids }] }));
  expect([...first.Volumes!, ...second.Volumes!].map((v) => v.VolumeId)).toEqual(ids);
  expect(second.NextToken).toBeUndefined();
  // A token belongs to its query.
  await expect(ec2.send(new DescribeVolumesCommand({ MaxResults: 2, NextToken: first.NextToken }))).rejects.toMatchObject({ name: 'InvalidPaginationToken' });
  await boto3Call(endpoints.ec2, endpoints.creds, 'DeleteVolume', { VolumeId: ids[0] });
  await expect(boto3Call(endpoints.ec2, endpoints.creds, 'DescribeVolumes', { VolumeIds: [ids[0]] })).rejects.toMatchObject({ code: 'InvalidVolume.NotFound' });
}, 600_000);

test("two accounts: B cannot describe, tag or delete A's images, snapshots or volumes", async () => {
  const a = endpoints.creds;
  const task = await importImageAndWait(a, 'disk.raw');
  const bob = await createAccount(service.tasks, 'bob-resources');
  const b: Ec2Credentials = { accessKeyId: bob.accessKeyId, secretAccessKey: bob.secretAccessKey };
  const volumes = (await boto3Call(endpoints.ec2, a, 'DescribeVolumes', {})).Volumes;
  const snapshotId = task.SnapshotDetails[0].SnapshotId;
  const outcomes = await boto3Calls(endpoints.ec2, [
    { creds: b, operation: 'DescribeImages', params: {} },
    { creds: b, operation: 'DescribeImages', params: { ImageIds: [task.ImageId] } },
    { creds: b, operation: 'DescribeImages', params: { Owners: [service.credentials.accountId] } },
    { creds: b, operation: 'DescribeSnapshots', params: { SnapshotIds: [snapshotId] } },
    { creds: b, operation: 'DescribeVolumes', params: { VolumeIds: [volumes[0].VolumeId] } },
    { creds: b, operation: 'DeregisterImage', params: { ImageId: task.ImageId } },
    { creds: b, operation: 'DeleteSnapshot', params: { SnapshotId: snapshotId } },
    { creds: b, operation: 'DeleteVolume', params: { VolumeId: volumes[0].VolumeId } },
    { creds: b, operation: 'CreateTags', params: { Resources: [task.ImageId], Tags: [{ Key: 'x', Value: 'y' }] } },
    { creds: b, operation: 'DescribeTags', params: {} },
    { creds: b, operation: 'DescribeImportImageTasks', params: { ImportTaskIds: [task.ImportTaskId] } },
  ]);
  expect(outcomes.map((o) => (o.ok ? 'ok' : o.error.code))).toEqual([
    'ok', 'InvalidAMIID.NotFound', 'ok', 'InvalidSnapshot.NotFound', 'InvalidVolume.NotFound', 'InvalidAMIID.NotFound', 'InvalidSnapshot.NotFound',
    'InvalidVolume.NotFound', 'InvalidAMIID.NotFound', 'ok', 'InvalidConversionTaskId',
  ]);
  expect((outcomes[0] as any).response.Images).toEqual([]);
  expect((outcomes[2] as any).response.Images).toEqual([]);
  expect((outcomes[9] as any).response.Tags).toEqual([]);
  // A's are all still there; the admin (A, the bootstrap account) sees B's with `verbose`.
  expect((await boto3Call(endpoints.ec2, a, 'DescribeImages', { ImageIds: [task.ImageId] })).Images).toHaveLength(1);
  const adminView = await boto3Call(endpoints.ec2, a, 'DescribeImages', { ImageIds: ['verbose'] });
  expect(adminView.Images.map((i: any) => i.ImageId)).toContain(task.ImageId);
}, 600_000);

const cli = awsCliPath();
(cli ? test : test.skip)('AWS CLI v2: import-image, wait image-available, describe-images, import-snapshot, describe/cancel import tasks, describe-volumes', async () => {
  const aws = (args: string[]) => awsCli(cli!, endpoints.ec2, endpoints.creds, args);
  const created = await aws(['import-image', '--description', 'by cli', '--disk-containers', `Format=RAW,UserBucket={S3Bucket=${BUCKET},S3Key=disk.raw}`]);
  expect(created.exitCode).toBe(0);
  const taskId = JSON.parse(created.stdout).ImportTaskId;
  expect(taskId).toMatch(/^import-ami-/);
  // image-available polls DescribeImages by id: wait for the id first, then for the image.
  let imageId: string | undefined;
  for (let i = 0; i < 240 && !imageId; i++) {
    const d = JSON.parse((await aws(['describe-import-image-tasks', '--import-task-ids', taskId])).stdout).ImportImageTasks[0];
    expect(d.Status).not.toBe('deleted');
    imageId = d.ImageId;
    if (!imageId) await new Promise((r) => setTimeout(r, 250));
  }
  const waited = await aws(['wait', 'image-available', '--image-ids', imageId!]);
  expect(waited).toMatchObject({ exitCode: 0 });
  const images = JSON.parse((await aws(['describe-images', '--image-ids', imageId!])).stdout).Images;
  expect(images[0]).toMatchObject({ ImageId: imageId, State: 'available', Description: 'by cli' });

  const snap = await aws(['import-snapshot', '--disk-container', `Format=RAW,UserBucket={S3Bucket=${BUCKET},S3Key=disk.raw}`]);
  expect(snap.exitCode).toBe(0);
  const snapTask = JSON.parse(snap.stdout).ImportTaskId;
  const cancelled = await aws(['cancel-import-task', '--import-task-id', snapTask]);
  // The task may have finished already on a fast machine; either answer is EC2's.
  if (cancelled.exitCode === 0) expect(JSON.parse(cancelled.stdout)).toMatchObject({ ImportTaskId: snapTask, PreviousState: 'active' });
  else expect(cancelled.stderr).toMatch(/IncorrectState/);
  const snaps = JSON.parse((await aws(['describe-import-snapshot-tasks', '--import-task-ids', snapTask])).stdout).ImportSnapshotTasks;
  expect(snaps[0].ImportTaskId).toBe(snapTask);
  const unknown = await aws(['cancel-import-task', '--import-task-id', 'import-ami-0123456789abcdef0']);
  expect(unknown.exitCode).not.toBe(0);
  expect(unknown.stderr).toMatch(/InvalidConversionTaskId/);
  const volumes = await aws(['describe-volumes']);
  expect(volumes.exitCode).toBe(0);
  expect(Array.isArray(JSON.parse(volumes.stdout).Volumes)).toBe(true);
  const conversions = await aws(['describe-conversion-tasks']);
  expect(conversions.exitCode).toBe(0);
  // Import tasks are not conversion tasks.
  expect(JSON.parse(conversions.stdout).ConversionTasks.map((t: any) => t.ConversionTaskId)).not.toContain(taskId);
  const cancelConversion = await aws(['cancel-conversion-task', '--conversion-task-id', taskId]);
  expect(cancelConversion.stderr).toMatch(/InvalidConversionTaskId/);
}, 600_000);

test('imaging account / key: create (--json), list, key create/list/delete, delete; the new key signs EC2 calls', async () => {
  const main = join(__dirname, '../../dist/cli/main.js');
  const dataDir = join(dir, 'data');
  const run = async (...args: string[]) => (await execFileAsync('node', [main, ...args, '--data-dir', dataDir])).stdout;
  const created = JSON.parse(await run('account', 'create', 'carol', '--json'));
  expect(created).toMatchObject({ name: 'carol', admin: false });
  expect(created.accountId).toMatch(/^\d{12}$/);
  expect(created.accessKeyId).toMatch(/^AKIA[0-9A-F]{16}$/);
  expect(created.secretAccessKey).toMatch(/^[A-Za-z0-9]{40}$/);
  const dup = await execFileAsync('node', [main, 'account', 'create', 'carol', '--data-dir', dataDir]).catch((e) => e);
  expect(dup.code).toBe(1);
  expect(dup.stderr).toMatch(/already exists/);
  const listed = JSON.parse(await run('account', 'list', '--json'));
  expect(listed.map((a: any) => a.name)).toEqual(expect.arrayContaining(['admin', 'carol']));
  expect(listed.find((a: any) => a.name === 'admin')).toMatchObject({ accountId: service.credentials.accountId, admin: true });
  const carol: Ec2Credentials = { accessKeyId: created.accessKeyId, secretAccessKey: created.secretAccessKey };
  expect((await boto3Call(endpoints.ec2, carol, 'DescribeImportImageTasks', {})).ImportImageTasks).toEqual([]);

  const second = JSON.parse(await run('key', 'create', 'carol', '--json'));
  const keys = JSON.parse(await run('key', 'list', created.accountId, '--json'));
  expect(keys.map((k: any) => k.accessKeyId).sort()).toEqual([created.accessKeyId, second.accessKeyId].sort());
  expect(JSON.stringify(keys)).not.toContain(created.secretAccessKey);
  await run('key', 'delete', created.accessKeyId);
  await expect(boto3Call(endpoints.ec2, carol, 'DescribeImportImageTasks', {})).rejects.toMatchObject({ code: 'AuthFailure' });
  expect((await boto3Call(endpoints.ec2, { accessKeyId: second.accessKeyId, secretAccessKey: second.secretAccessKey }, 'DescribeImages', {})).Images).toEqual([]);
  await run('account', 'delete', 'carol');
  await expect(boto3Call(endpoints.ec2, { accessKeyId: second.accessKeyId, secretAccessKey: second.secretAccessKey }, 'DescribeImages', {})).rejects.toMatchObject({ code: 'AuthFailure' });
}, 120_000);

test('the imaging CLI: import-image of a local file --wait --json, describe-import-image-tasks, import-snapshot, cancel-import-task; delete-disk-image removes an upload', async () => {
  const main = join(__dirname, '../../dist/cli/main.js');
  const env = { ...process.env, IMAGING_EC2_ENDPOINT: endpoints.ec2, IMAGING_S3_ENDPOINT: endpoints.s3, AWS_ACCESS_KEY_ID: endpoints.creds.accessKeyId, AWS_SECRET_ACCESS_KEY: endpoints.creds.secretAccessKey };
  const run = async (...args: string[]) => (await execFileAsync('node', [main, ...args], { env })).stdout;
  const done = JSON.parse(await run('import-image', disk.path, '--format', 'raw', '--bucket', 'cli-images', '--description', 'from the cli', '--tag', 'team=imaging', '--wait', '--json'));
  expect(done).toMatchObject({ status: 'completed', format: 'RAW', description: 'from the cli', source: 's3://cli-images/disk.raw', diskImageSize: disk.size, tags: { team: 'imaging' } });
  expect(done.imageId).toMatch(/^ami-[0-9a-f]{17}$/);
  const listed = JSON.parse(await run('describe-import-image-tasks', done.importTaskId, '--json'));
  expect(listed).toEqual([done]);
  const text = await run('describe-import-image-tasks', done.importTaskId);
  expect(text.split('\n')[0]).toBe(`${done.importTaskId}  completed`);
  const snapId = (await run('import-snapshot', 's3://cli-images/disk.raw', '--format', 'RAW')).trim();
  expect(snapId).toMatch(/^import-snap-[0-9a-f]{17}$/);
  const cancel = await execFileAsync('node', [main, 'cancel-import-task', snapId, '--json'], { env }).then((r) => ({ code: 0, ...r }), (e) => e);
  if (cancel.code === 0) expect(JSON.parse(cancel.stdout)).toMatchObject({ importTaskId: snapId, previousState: 'active' });
  else expect(cancel.stderr).toMatch(/^error: IncorrectState: /); // it finished first
  const unknown = await execFileAsync('node', [main, 'cancel-import-task', 'import-ami-0123456789abcdef0'], { env }).catch((e) => e);
  expect([unknown.code, unknown.stderr]).toEqual([2, expect.stringMatching(/^error: InvalidConversionTaskId: /)]);

  const up = await upload(endpoints, disk.path, 'delete-me', { prefix: 'upload/' });
  const { s3 } = await clientFor(endpoints);
  const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
  const before = await s3.send(new ListObjectsV2Command({ Bucket: 'delete-me' }));
  expect(before.KeyCount).toBeGreaterThan(2);
  const deleted = JSON.parse(await run('delete-disk-image', '--manifest-url', up.manifestUrl, '--json'));
  expect(deleted).toEqual({ partsDeleted: before.KeyCount! - 1, manifestDeleted: true, failures: [] });
  const after = await s3.send(new ListObjectsV2Command({ Bucket: 'delete-me' }));
  expect(after.KeyCount ?? 0).toBe(0);
}, 600_000);
