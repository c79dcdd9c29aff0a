/**
 * An instance import ends as soon as any of its disks fails, whichever order the disks finish
 * in, through `imaging serve` in-process: the conversion task is cancelled with a message naming
 * the disk that failed (`aws ec2 wait conversion-task-cancelled` returns at its first poll), the
 * other disks are cancelled, and nothing of the instance stays: no volume or instance record, no
 * object under any of its tasks' prefixes in the image store. The hostile disk is a VMDK
 * descriptor naming an extent file (monolithicFlat), which the service refuses; its parts and
 * manifest are put as the CLI would, without the CLI's own check that would refuse it first.
 */
import { execFileSync } from 'child_process';
import { readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { RunningService } from '../../cli/serve';
import { uploadPrepared, type PreparedUpload } from '../../cli/commands/import-volume';
import type { TaskDocument, VolumeRecord } from '../../tasks/task';
import { seededBytes, tempDir } from '../helpers/disk-corpus';
import { awsCli, awsCliPath, boto3Call } from '../helpers/ec2-clients';
import { UUIDS, debianTree, makeDisk } from '../helpers/guest-images';
import { clientFor, startTestService, upload, uploadOptions, waitForTask, type Endpoints } from './import-driver';

const BUCKET = 'failing-disks';
const IMAGE_BUCKET = 'imaging-images';
let service: RunningService;
let endpoints: Endpoints;
let dir: string;
let bootVmdk: string;
let dataRaw: string;
let hostileVmdk: string;
const cli = awsCliPath();

beforeAll(async () => {
  dir = tempDir('e2e-instance-failure-');
  const boot = makeDisk({ dir, path: (name) => join(dir, name), cleanup: () => undefined }, 'boot', {
    table: 'mbr',
    biosBootCode: true,
    partitions: [{ sizeMiB: 24, bootable: true, fs: { kind: 'ext4', uuid: UUIDS.debianRoot, tree: debianTree() } }],
  });
  bootVmdk = join(dir, 'boot.vmdk');
  execFileSync('qemu-img', ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', boot, bootVmdk]);
  dataRaw = join(dir, 'data.raw');
  writeFileSync(dataRaw, seededBytes(2 * 1024 * 1024 + 777, 41));
  hostileVmdk = join(dir, 'hostile.vmdk');
  execFileSync('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', hostileVmdk, '4M']);
  ({ service, endpoints } = await startTestService(dir));
}, 120_000);

afterAll(async () => {
  await service?.stop();
});

/** A presigned manifest URL for a disk uploaded later under `prefix` (the key the upload writes). */
async function laterManifestUrl(prefix: string, file: string): Promise<string> {
  const { s3 } = await clientFor(endpoints);
  return getSignedUrl(s3, new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}${file.split('/').pop()}.manifest.xml` }), { expiresIn: 3600 });
}

/** Puts the hostile disk's parts and manifest under `prefix`, as the CLI writes them (its local check skipped). */
async function uploadHostile(prefix: string): Promise<void> {
  const size = readFileSync(hostileVmdk).length;
  const prepared: PreparedUpload = { file: hostileVmdk, format: 'VMDK', size, partSize: 2 ** 20, parts: 1, volumeSizeGiB: 1, prefix };
  await uploadPrepared(await clientFor(endpoints), prepared, uploadOptions(BUCKET, { format: 'VMDK' }));
}

async function importInstance(disks: { format: string; bytes: number; manifestUrl: string }[]): Promise<{ taskId: string; instanceId: string; memberIds: string[] }> {
  const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportInstance', {
    LaunchSpecification: { Architecture: 'x86_64' },
    DiskImages: disks.map((d) => ({ Image: { Format: d.format, Bytes: d.bytes, ImportManifestUrl: d.manifestUrl }, Volume: { Size: 1 } })),
  });
  const taskId = out.ConversionTask.ConversionTaskId;
  const task = (await service.tasks.get(taskId))!;
  return { taskId, instanceId: out.ConversionTask.ImportInstance.InstanceId, memberIds: task.request.instance!.volumeTaskIds! };
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The conversion task ends within seconds; the AWS CLI's waiter sees it at once; nothing of the instance stays. */
async function expectEndedAndGone(taskId: string, instanceId: string, memberIds: string[], failedSince: number, failedDisk: number): Promise<any> {
  const described = await waitForTask(endpoints, taskId, 30_000);
  const seconds = (Date.now() - failedSince) / 1000;
  expect(described.State).toBe('cancelled');
  // The sweeper would re-drive it only after 10 minutes: this is the disk's failure ending it.
  expect(seconds).toBeLessThan(30);
  expect(described.StatusMessage).toMatch(new RegExp(`^ClientError: disk ${failedDisk} \\(${memberIds[failedDisk - 2]}\\) did not import: .*monolithicFlat`));
  expect(described.ImportInstance.Volumes.map((v: any) => v.Status)).toEqual([taskId, ...memberIds].map(() => 'cancelled'));
  if (cli) {
    const started = Date.now();
    const waited = await awsCli(cli, endpoints.ec2, endpoints.creds, ['wait', 'conversion-task-cancelled', '--conversion-task-ids', taskId]);
    expect([waited.exitCode, waited.stderr]).toEqual([0, '']);
    expect(Date.now() - started).toBeLessThan(10_000);
  }

  // Every task of the instance has ended, and none is left in a state a stage would pick up.
  const tasks = await Promise.all([taskId, ...memberIds].map((id) => service.tasks.get(id)));
  for (const t of tasks as TaskDocument[]) {
    expect([t.id, ['cancelled', 'failed', 'completed'].includes(t.state), t.artifacts.volumeId]).toEqual([t.id, true, undefined]);
  }
  // No volume and no instance record of the instance; nothing under its tasks' prefixes in the image store.
  const volumes = await service.tasks.listResources({ kind: 'volume', accountId: service.credentials.accountId });
  expect((volumes as VolumeRecord[]).filter((v) => [taskId, ...memberIds].includes(v.taskId))).toEqual([]);
  expect(await service.tasks.getResource(instanceId)).toBeUndefined();
  for (const id of [taskId, ...memberIds]) {
    const listed = await service.s3.send(new ListObjectsV2Command({ Bucket: IMAGE_BUCKET, Prefix: `images/${id}/` }));
    expect([id, (listed.Contents ?? []).map((o) => o.Key)]).toEqual([id, []]);
  }
  return described;
}

test('a further disk fails after the boot disk and another disk registered: the task is cancelled at once naming it; both volumes are removed', async () => {
  const boot = await upload(endpoints, bootVmdk, BUCKET, { format: 'VMDK', prefix: 'after/1/' });
  const data = await upload(endpoints, dataRaw, BUCKET, { format: 'RAW', prefix: 'after/2/' });
  const hostileUrl = await laterManifestUrl('after/3/', hostileVmdk);
  const { taskId, instanceId, memberIds } = await importInstance([
    { format: 'VMDK', bytes: boot.size, manifestUrl: boot.manifestUrl },
    { format: 'RAW', bytes: data.size, manifestUrl: data.manifestUrl },
    { format: 'VMDK', bytes: readFileSync(hostileVmdk).length, manifestUrl: hostileUrl },
  ]);
  // The boot disk registers its volume and waits for the others; disk 2 completes with its own.
  let registered: string[] = [];
  await until('the boot disk and disk 2 to register', async () => {
    const [instance, second] = await Promise.all([service.tasks.get(taskId), service.tasks.get(memberIds[0])]);
    registered = [instance?.artifacts.volumeId, second?.artifacts.volumeId].filter((v): v is string => !!v);
    return instance?.state === 'boot-checked' && second?.state === 'completed' && registered.length === 2;
  });
  for (const volumeId of registered) expect((await service.tasks.getResource(volumeId))?.kind).toBe('volume');
  const waiting = (await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeConversionTasks', { ConversionTaskIds: [taskId] })).ConversionTasks[0];
  expect([waiting.State, waiting.StatusMessage]).toEqual(['active', 'Waiting for the instance\'s other disks']);

  await uploadHostile('after/3/');
  const failedSince = Date.now();
  await expectEndedAndGone(taskId, instanceId, memberIds, failedSince, 3);
  for (const volumeId of registered) expect(await service.tasks.getResource(volumeId)).toBeUndefined();
  // The disk that had completed says where its volume went.
  expect((await service.tasks.get(memberIds[0]))!.statusMessage).toMatch(/^Volume vol-[0-9a-f]+ removed: the instance did not import$/);
}, 180_000);

test('a further disk fails first, before the boot disk is even uploaded: the task is cancelled at once, and uploading the boot disk later starts nothing', async () => {
  const hostilePrefix = 'first/2/';
  await uploadHostile(hostilePrefix);
  const data = await upload(endpoints, dataRaw, BUCKET, { format: 'RAW', prefix: 'first/3/' });
  const bootUrl = await laterManifestUrl('first/1/', bootVmdk);
  const failedSince = Date.now();
  const { taskId, instanceId, memberIds } = await importInstance([
    { format: 'VMDK', bytes: readFileSync(bootVmdk).length, manifestUrl: bootUrl },
    { format: 'VMDK', bytes: readFileSync(hostileVmdk).length, manifestUrl: (await laterManifestUrl(hostilePrefix, hostileVmdk)) },
    { format: 'RAW', bytes: data.size, manifestUrl: data.manifestUrl },
  ]);
  const described = await expectEndedAndGone(taskId, instanceId, memberIds, failedSince, 2);
  expect(described.ImportInstance.Volumes[1].StatusMessage).toMatch(/^ClientError: .*monolithicFlat/);

  // The boot disk's upload arriving now changes nothing: the task has ended.
  await upload(endpoints, bootVmdk, BUCKET, { format: 'VMDK', prefix: 'first/1/' });
  await new Promise((r) => setTimeout(r, 3000));
  const after = await service.tasks.get(taskId);
  expect([after!.state, after!.statusMessage]).toEqual(['cancelled', described.StatusMessage]);
  const listed = await service.s3.send(new ListObjectsV2Command({ Bucket: IMAGE_BUCKET, Prefix: `images/${taskId}/` }));
  expect(listed.Contents ?? []).toEqual([]);
}, 120_000);

(cli ? test : test.skip)('aws ec2 cancel-conversion-task on an instance whose boot disk registered and waits for another: cancelled within seconds, its volume removed', async () => {
  const boot = await upload(endpoints, bootVmdk, BUCKET, { format: 'VMDK', prefix: 'cancel/1/' });
  const { taskId, instanceId, memberIds } = await importInstance([
    { format: 'VMDK', bytes: boot.size, manifestUrl: boot.manifestUrl },
    { format: 'RAW', bytes: 4096, manifestUrl: await laterManifestUrl('cancel/2/', dataRaw) },
  ]);
  let volumeId: string | undefined;
  await until('the boot disk to register', async () => {
    const instance = await service.tasks.get(taskId);
    volumeId = instance?.artifacts.volumeId;
    return instance?.state === 'boot-checked' && volumeId !== undefined && (await service.tasks.getResource(volumeId)) !== undefined;
  });
  const cancelled = await awsCli(cli!, endpoints.ec2, endpoints.creds, ['cancel-conversion-task', '--conversion-task-id', taskId, '--reason-message', 'wrong disks']);
  expect([cancelled.exitCode, cancelled.stderr]).toEqual([0, '']);
  const since = Date.now();
  const described = await waitForTask(endpoints, taskId, 30_000);
  expect([described.State, described.StatusMessage]).toEqual(['cancelled', 'wrong disks']);
  expect(Date.now() - since).toBeLessThan(30_000);
  await until('the instance task to end', async () => (await service.tasks.get(taskId))?.state === 'cancelled', 30_000);
  expect(await service.tasks.getResource(volumeId!)).toBeUndefined();
  expect(await service.tasks.getResource(instanceId)).toBeUndefined();
  for (const id of [taskId, ...memberIds]) {
    const listed = await service.s3.send(new ListObjectsV2Command({ Bucket: IMAGE_BUCKET, Prefix: `images/${id}/` }));
    expect([id, (listed.Contents ?? []).map((o) => o.Key)]).toEqual([id, []]);
  }
}, 120_000);
