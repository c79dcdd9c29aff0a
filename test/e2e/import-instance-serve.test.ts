/**
 * ImportInstance through the whole pipeline in one process (`imaging serve` as a library, its own
 * data directory), driven by boto3, @aws-sdk/client-ec2 and the imaging CLI: the converted disk
 * is compared with qemu-img's, and the registered instance is read back from the store.
 */
import { execFileSync } from 'child_process';
import { join } from 'path';
import { CancelConversionTaskCommand, DescribeConversionTasksCommand, ImportInstanceCommand } from '@aws-sdk/client-ec2';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { RunningService } from '../../cli/serve';
import type { InstanceRecord, TaskDocument } from '../../tasks/task';
import type { CloudEvent } from 'cloudevents';
import { registerStage } from '../../functions/register/register-stage';
import type { StageContext } from '../../functions/stage';
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { statSync } from 'fs';
import { qemuToRaw, tempDir } from '../helpers/disk-corpus';
import { UUIDS, debianTree, makeDisk } from '../helpers/guest-images';
import { boto3Call, sdkClient } from '../helpers/ec2-clients';
import { clientFor, fileSha256, objectBytes, sha256, upload, waitForTask, type Endpoints, runCli } from './import-driver';
import { startTestService } from './import-driver';


let service: RunningService;
let endpoints: Endpoints;
let dir: string;
let disk: { path: string; size: number };
let vmdk: string;
let reference: Buffer;

beforeAll(async () => {
  dir = tempDir('e2e-instance-');
  // A system disk the validate stage accepts: Debian-shaped, x86_64 kernel, GRUB-like boot code.
  const path = makeDisk({ dir, path: (name) => join(dir, name), cleanup: () => undefined }, 'disk', {
    table: 'mbr',
    biosBootCode: true,
    partitions: [{ sizeMiB: 40, bootable: true, fs: { kind: 'ext4', uuid: UUIDS.debianRoot, tree: debianTree() } }],
  });
  disk = { path, size: statSync(path).size };
  vmdk = join(dir, 'disk.vmdk');
  execFileSync('qemu-img', ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', disk.path, vmdk]);
  reference = qemuToRaw(vmdk, join(dir, 'reference.raw'));
  ({ service, endpoints } = await startTestService(dir));
});

afterAll(async () => {
  await service?.stop();
});

/** The task completed, its image is qemu-img's raw conversion, and a stopped instance owns its volume. */
async function expectImportedInstance(taskId: string, instanceId: string, expectedSha256: string) {
  const doc = (await service.tasks.get(taskId))!;
  expect(doc).toMatchObject({ kind: 'import-instance', state: 'completed' });
  const image = doc.artifacts.image!;
  const stored = await objectBytes(service.s3, image.bucket, image.key);
  expect(sha256(stored)).toBe(expectedSha256);
  expect(image.sha256).toBe(expectedSha256);
  const volumeId = doc.artifacts.volumeId!;
  expect(await service.tasks.getResource(volumeId)).toMatchObject({ kind: 'volume', taskId, image });
  const instance = (await service.tasks.getResource(instanceId)) as InstanceRecord;
  expect(instance).toMatchObject({ id: instanceId, kind: 'instance', taskId, state: 'stopped', volumeIds: [volumeId], accountId: doc.accountId });
  return { doc, instance, volumeId };
}

test('boto3: ImportInstance of a VMDK converts to the bytes qemu-img makes; describe shows the instance', async () => {
  const up = await upload(endpoints, vmdk, 'boto3-instance', { format: 'VMDK' });
  // The disk holds Debian: a Linux instance leaves Platform out (Windows is refused below).
  const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportInstance', {
    Description: 'e2e boto3 instance',
    LaunchSpecification: {
      Architecture: 'x86_64',
      InstanceType: 'm5.large',
      Placement: { AvailabilityZone: 'local-1b' },
      GroupNames: ['web'],
      Monitoring: true,
      InstanceInitiatedShutdownBehavior: 'stop',
      UserData: { Data: Buffer.from('echo hello').toString('base64') },
    },
    DiskImages: [{ Image: { Format: 'VMDK', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB }, Description: 'boot disk' }],
  });
  const created = out.ConversionTask;
  expect(created.ConversionTaskId).toMatch(/^import-i-[0-9a-f]{8}$/);
  expect(created.State).toBe('active');
  const instanceId = created.ImportInstance.InstanceId;
  expect(instanceId).toMatch(/^i-[0-9a-f]{17}$/);
  expect(created.ImportInstance).toMatchObject({ Description: 'e2e boto3 instance' });
  expect(created.ImportInstance.Platform).toBeUndefined();
  expect(created.ImportInstance.Volumes).toEqual([
    expect.objectContaining({ AvailabilityZone: 'local-1b', Description: 'boot disk', Image: { Format: 'VMDK', Size: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB }, Status: 'active' }),
  ]);

  const done = await waitForTask(endpoints, created.ConversionTaskId);
  expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
  const { instance, volumeId } = await expectImportedInstance(created.ConversionTaskId, instanceId, sha256(reference));
  expect(done.ImportVolume).toBeUndefined();
  expect(done.ImportInstance).toEqual({
    Description: 'e2e boto3 instance',
    InstanceId: instanceId,
    Volumes: [
      {
        AvailabilityZone: 'local-1b',
        BytesConverted: reference.length,
        Description: 'boot disk',
        Image: { Format: 'VMDK', Size: up.size, ImportManifestUrl: up.manifestUrl, Checksum: sha256(reference) },
        Status: 'completed',
        StatusMessage: '',
        Volume: { Id: volumeId, Size: up.volumeSizeGiB },
      },
    ],
  });
  expect(instance).toMatchObject({
    architecture: 'x86_64', instanceType: 'm5.large', availabilityZone: 'local-1b',
    groupNames: ['web'], monitoring: true, instanceInitiatedShutdownBehavior: 'stop', description: 'e2e boto3 instance',
  });
  expect(instance.platform).toBeUndefined();
});

test('boto3: Platform Windows for a disk that holds Linux ends the task cancelled, naming the mismatch', async () => {
  const up = await upload(endpoints, vmdk, 'boto3-windows', { format: 'VMDK' });
  const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportInstance', {
    Platform: 'Windows',
    LaunchSpecification: { Architecture: 'x86_64', InstanceType: 'm5.large' },
    DiskImages: [{ Image: { Format: 'VMDK', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB } }],
  });
  expect(out.ConversionTask.ImportInstance.Platform).toBe('Windows');
  const done = await waitForTask(endpoints, out.ConversionTask.ConversionTaskId);
  expect([done.State, done.StatusMessage]).toEqual([
    'cancelled',
    'ClientError: Platform Windows was requested but the disk holds Debian GNU/Linux 12 (bookworm) on partition 1; request Platform Linux, or leave Platform out',
  ]);
  expect(await service.tasks.getResource(out.ConversionTask.ImportInstance.InstanceId)).toBeUndefined();
});

test('@aws-sdk/client-ec2: a Linux ImportInstance (no Platform) completes; describe parsed; cancel of a completed task refused', async () => {
  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
  try {
    const up = await upload(endpoints, vmdk, 'sdk-instance', { format: 'VMDK' });
    const created = await ec2.send(new ImportInstanceCommand({
      Description: 'linux box',
      LaunchSpecification: { Architecture: 'x86_64', InstanceType: 't3.small' },
      DiskImages: [{ Image: { Format: 'VMDK', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB } }],
    } as any));
    const taskId = created.ConversionTask!.ConversionTaskId!;
    const instanceId = created.ConversionTask!.ImportInstance!.InstanceId!;
    expect(taskId).toMatch(/^import-i-/);
    expect(instanceId).toMatch(/^i-[0-9a-f]{17}$/);
    expect(created.ConversionTask!.ImportInstance!.Platform).toBeUndefined();

    const done = await waitForTask(endpoints, taskId);
    expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
    const described = (await ec2.send(new DescribeConversionTasksCommand({ ConversionTaskIds: [taskId] }))).ConversionTasks![0];
    expect(described.State).toBe('completed');
    expect(described.ImportInstance!.InstanceId).toBe(instanceId);
    expect(described.ImportInstance!.Description).toBe('linux box');
    const [volume] = described.ImportInstance!.Volumes!;
    expect(volume.Status).toBe('completed');
    expect(volume.Volume!.Id).toMatch(/^vol-[0-9a-f]{17}$/);
    expect(volume.Image).toMatchObject({ Format: 'VMDK', Checksum: sha256(reference) });
    expect(volume.BytesConverted).toBe(reference.length);
    expect(volume.AvailabilityZone).toMatch(/a$/);

    const { instance } = await expectImportedInstance(taskId, instanceId, sha256(reference));
    expect(instance.platform).toBeUndefined();
    expect(instance).toMatchObject({ architecture: 'x86_64', instanceType: 't3.small' });

    await expect(ec2.send(new CancelConversionTaskCommand({ ConversionTaskId: taskId }))).rejects.toMatchObject({ name: 'IncorrectState' });
  } finally {
    ec2.destroy();
  }
});

test('an ImportInstance waiting for its upload is cancelled with the reason, and no instance is made', async () => {
  const ctx = await clientFor(endpoints);
  const manifestUrl = await getSignedUrl(ctx.s3, new GetObjectCommand({ Bucket: 'never', Key: 'never.xml' }), { expiresIn: 3600 });
  const created = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportInstance', {
    LaunchSpecification: { Architecture: 'x86_64' },
    DiskImages: [{ Image: { Format: 'RAW', Bytes: disk.size, ImportManifestUrl: manifestUrl }, Volume: { Size: 1 } }],
  });
  const taskId = created.ConversionTask.ConversionTaskId;
  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
  try {
    await ec2.send(new CancelConversionTaskCommand({ ConversionTaskId: taskId, ReasonMessage: 'not this one' }));
  } finally {
    ec2.destroy();
  }
  const task = await waitForTask(endpoints, taskId, 10_000);
  expect(task).toMatchObject({ State: 'cancelled', StatusMessage: 'not this one' });
  expect(task.ImportInstance.Volumes[0]).toMatchObject({ Status: 'cancelled', StatusMessage: 'not this one' });
  expect(await service.tasks.getResource(created.ConversionTask.ImportInstance.InstanceId)).toBeUndefined();
});

describe('bad input', () => {
  test('more than 26 disk images are refused by the API (boto3 and client-ec2) and nothing is created', async () => {
    const up = await upload(endpoints, disk.path, 'bad-instance');
    const diskImage = { Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB } };
    const tooMany = Array.from({ length: 27 }, () => diskImage);
    const before = (await service.tasks.list({ accountId: service.credentials.accountId })).length;
    await expect(boto3Call(endpoints.ec2, endpoints.creds, 'ImportInstance', { LaunchSpecification: { Architecture: 'x86_64' }, DiskImages: tooMany }))
      .rejects.toMatchObject({ code: 'InvalidParameterValue', message: expect.stringMatching(/at most 26/) });
    const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
    try {
      const error: any = await ec2.send(new ImportInstanceCommand({ Platform: 'Windows', DiskImages: tooMany } as any)).catch((e) => e);
      expect(error.name).toBe('InvalidParameterValue');
      const none: any = await ec2.send(new ImportInstanceCommand({ Platform: 'Windows', LaunchSpecification: { Architecture: 'x86_64' } } as any)).catch((e) => e);
      expect(none.name).toBe('MissingParameter');
    } finally {
      ec2.destroy();
    }
    expect((await service.tasks.list({ accountId: service.credentials.accountId })).length).toBe(before);
  });

  test('a RAW upload declared as VMDK fails in the pipeline with a ClientError naming both', async () => {
    const up = await upload(endpoints, disk.path, 'bad-instance', { prefix: 'raw-as-vmdk/' });
    const created = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportInstance', {
      LaunchSpecification: { Architecture: 'x86_64' },
      DiskImages: [{ Image: { Format: 'VMDK', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB } }],
    });
    const task = await waitForTask(endpoints, created.ConversionTask.ConversionTaskId);
    expect(task.State).toBe('cancelled');
    expect(task.StatusMessage).toMatch(/^ClientError: .*RAW.*VMDK|^ClientError: .*VMDK.*RAW/);
    expect(await service.tasks.getResource(created.ConversionTask.ImportInstance.InstanceId)).toBeUndefined();
  });
});

test('the imaging CLI: import-instance, then describe-conversion-tasks --json shows the instance', async () => {
  const imported = await runCli(endpoints, ['import-instance', vmdk, '--format', 'vmdk', '--bucket', 'cli-instance', '--architecture', 'x86_64', '--instance-type', 'm5.large', '--availability-zone', 'local-1c', '--description', 'from the cli', '--no-progress', '--wait']);
  const [first, ...followed] = imported.stdout.trim().split('\n');
  const [taskId, instanceId] = first.split('\t');
  expect(taskId).toMatch(/^import-i-[0-9a-f]{8}$/);
  expect(instanceId).toMatch(/^i-[0-9a-f]{17}$/);
  // --wait follows the task to its end and prints it.
  expect(followed[0]).toMatch(new RegExp(`^${taskId}  completed  100%`));
  expect(followed.join('\n')).toContain(instanceId);
  expect(followed.join('\n')).not.toContain('(Windows)');
  const described = await runCli(endpoints, ['describe-conversion-tasks', taskId, '--json']);
  const [task] = JSON.parse(described.stdout);
  expect(task.platform).toBeUndefined();
  expect(task).toMatchObject({ conversionTaskId: taskId, state: 'completed', instanceId, description: 'from the cli', format: 'VMDK', imageSha256: sha256(reference), bytesConverted: reference.length });
  expect(task.imageLocation).toMatch(new RegExp(`^s3://imaging-images/images/${taskId}/`));
  // The validate stage's guest report, as the task keeps it.
  expect(task.validation).toMatchObject({
    purpose: 'system', partitionTable: 'mbr', bootMode: 'legacy-bios', architecture: 'x86_64',
    os: { family: 'linux', distribution: 'debian', version: '12' },
    kernels: [{ path: '/boot/vmlinuz-6.1.0-18-amd64', architecture: 'x86_64' }],
    filesystems: [{ type: 'ext4', partition: 1, role: 'linux-root', mountpoint: '/' }],
    verdict: { accepted: true, message: 'accepted: Debian GNU/Linux 12 (bookworm), x86_64, boots with legacy BIOS, kernel 6.1.0-18-amd64' },
  });
  expect((await waitForTask(endpoints, taskId)).State).toBe('completed');
  const { instance } = await expectImportedInstance(taskId, instanceId, fileSha256(join(dir, 'reference.raw')));
  expect(instance).toMatchObject({ availabilityZone: 'local-1c', instanceType: 'm5.large' });
});

test('register: a redelivery after a crash reuses the fixed volume id and writes the same stopped instance', async () => {
  const now = new Date().toISOString();
  const image = { bucket: 'imaging-images', key: 'images/import-i-0000c0de/disk.raw', size: 1024 ** 3, sha256: 'ef'.repeat(32) };
  const task: TaskDocument = {
    id: 'import-i-0000c0de', kind: 'import-instance', accountId: service.credentials.accountId, state: 'boot-checked', statusMessage: '', progress: 90, bytesConverted: image.size,
    request: { format: 'RAW', bytes: image.size, manifestUrl: 'http://unused/', volumeSizeGiB: 1, availabilityZone: 'z-1', instance: { instanceId: 'i-0123456789abcdef0', architecture: 'i386', platform: 'Windows' } },
    // As a register stage that crashed after fixing the volume id (and writing the volume) leaves it.
    artifacts: { image, volumeId: 'vol-0000000000000c0de' },
    history: [{ at: now, from: null, to: 'boot-checked' }], createdAt: now, updatedAt: now, expiresAt: new Date(Date.now() + 3600_000).toISOString(), version: 0,
  };
  await service.tasks.create(task);
  const published: CloudEvent<unknown>[] = [];
  const ctx = {
    tasks: service.tasks, s3: service.s3, config: {} as StageContext['config'], publish: async (e: CloudEvent<unknown>) => void published.push(e),
    delivery: { attempt: 2, working: () => undefined }, log: { info: () => undefined, warn: () => undefined, error: () => undefined },
  } as StageContext;
  const event = makeEvent(EVENT_TYPES.bootChecked, { taskId: task.id, accountId: task.accountId }, 'boot-check');
  await registerStage.handle(event, ctx);
  await registerStage.handle(event, ctx); // and once more: dropped, nothing changes
  expect((await service.tasks.get(task.id))!).toMatchObject({ state: 'completed', artifacts: { volumeId: 'vol-0000000000000c0de' } });
  expect(await service.tasks.getResource('i-0123456789abcdef0')).toEqual({
    id: 'i-0123456789abcdef0', kind: 'instance', accountId: task.accountId, taskId: task.id, state: 'stopped', volumeIds: ['vol-0000000000000c0de'],
    architecture: 'i386', platform: 'Windows', availabilityZone: 'z-1', createdAt: expect.any(String),
  });
  expect(await service.tasks.getResource('vol-0000000000000c0de')).toMatchObject({ kind: 'volume', sizeGiB: 1, image });
  expect(published.map((e) => [e.type, (e.data as any).resourceId])).toEqual([[EVENT_TYPES.registered, 'i-0123456789abcdef0']]);
});
