/**
 * ImportInstance with several disks through `imaging serve` in-process: a bootable Debian-shaped
 * VMDK as DiskImage.1 and two data disks (RAW, VHD) as DiskImage.2 and .3. The AWS CLI v2 waits
 * for the conversion task (`aws ec2 wait conversion-task-completed`), describes it with every
 * volume, describes the volumes, and cancels another instance import with all its disks. Each
 * volume holds the bytes qemu-img makes of its disk, and the instance has the volumes in order.
 */
import type { RunningService } from '../../cli/serve';
import type { InstanceRecord, VolumeRecord } from '../../tasks/task';
import { tempDir } from '../helpers/disk-corpus';
import { awsCli, awsCliPath, boto3Call } from '../helpers/ec2-clients';
import { objectBytes, runCli, sha256, startTestService, upload, type Endpoints } from './import-driver';
import { makeInstanceDisks, type InstanceDisk } from '../helpers/instance-disks';

let service: RunningService;
let endpoints: Endpoints;
let dir: string;
let disks: InstanceDisk[] = [];
const cli = awsCliPath();

beforeAll(async () => {
  dir = tempDir('e2e-instance-disks-');
  disks = makeInstanceDisks(dir, 21);
  ({ service, endpoints } = await startTestService(dir));
}, 120_000);

afterAll(async () => {
  await service?.stop();
});

(cli ? test : test.skip)('three disks: aws ec2 wait conversion-task-completed returns; describe-conversion-tasks shows every volume; each volume is qemu-img\'s bytes; the instance has them in order', async () => {
  const aws = (args: string[]) => awsCli(cli!, endpoints.ec2, endpoints.creds, args);
  const uploads = [];
  for (const [i, d] of disks.entries()) uploads.push(await upload(endpoints, d.path, 'instance-disks', { format: d.format, prefix: `disk${i + 1}/` }));
  const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportInstance', {
    Platform: 'Linux',
    Description: 'three disks',
    LaunchSpecification: { Architecture: 'x86_64', InstanceType: 'm5.large', Placement: { AvailabilityZone: 'local-1a' } },
    DiskImages: uploads.map((up, i) => ({
      Image: { Format: disks[i].format, Bytes: up.size, ImportManifestUrl: up.manifestUrl },
      Volume: { Size: up.volumeSizeGiB },
      Description: `disk ${i + 1}`,
    })),
  });
  const taskId = out.ConversionTask.ConversionTaskId;
  const instanceId = out.ConversionTask.ImportInstance.InstanceId;
  expect(out.ConversionTask.ImportInstance.Volumes.map((v: any) => [v.Image.Format, v.Description])).toEqual([['VMDK', 'disk 1'], ['RAW', 'disk 2'], ['VHD', 'disk 3']]);

  // The CLI's waiter polls every 15 s; on a loaded machine the import takes a few polls.
  const waited = await aws(['wait', 'conversion-task-completed', '--conversion-task-ids', taskId]);
  const described = await aws(['describe-conversion-tasks', '--conversion-task-ids', taskId]);
  // On a waiter failure, the task as described says why.
  expect([waited.exitCode, waited.stderr, waited.exitCode === 0 ? '' : described.stdout]).toEqual([0, '', '']);
  expect(described.exitCode).toBe(0);
  const [task] = JSON.parse(described.stdout).ConversionTasks;
  expect(task).toMatchObject({ ConversionTaskId: taskId, State: 'completed', ImportInstance: { InstanceId: instanceId, Description: 'three disks' } });
  const volumes = task.ImportInstance.Volumes;
  expect(volumes.map((v: any) => [v.Image.Format, v.Status, v.Description, v.AvailabilityZone, v.BytesConverted])).toEqual(
    disks.map((d, i) => [d.format, 'completed', `disk ${i + 1}`, 'local-1a', d.reference.length]),
  );
  const volumeIds: string[] = volumes.map((v: any) => v.Volume.Id);
  expect(new Set(volumeIds).size).toBe(3);

  // Each volume holds the bytes qemu-img makes of its disk.
  for (const [i, volumeId] of volumeIds.entries()) {
    const record = (await service.tasks.getResource(volumeId)) as VolumeRecord;
    const stored = await objectBytes(service.s3, record.image.bucket, record.image.key);
    expect([i, stored.length, sha256(stored)]).toEqual([i, disks[i].reference.length, sha256(disks[i].reference)]);
    expect(volumes[i].Image.Checksum).toBe(sha256(disks[i].reference));
  }
  const instance = (await service.tasks.getResource(instanceId)) as InstanceRecord;
  expect(instance).toMatchObject({ kind: 'instance', state: 'stopped', taskId, volumeIds, architecture: 'x86_64', instanceType: 'm5.large' });
  expect(instance.platform).toBeUndefined();

  const listed = await aws(['describe-volumes', '--volume-ids', ...volumeIds]);
  expect(listed.exitCode).toBe(0);
  expect(JSON.parse(listed.stdout).Volumes.map((v: any) => v.VolumeId).sort()).toEqual([...volumeIds].sort());
  // The further disks' tasks are not conversion tasks of their own.
  const all = JSON.parse((await aws(['describe-conversion-tasks'])).stdout).ConversionTasks.map((t: any) => t.ConversionTaskId);
  expect(all).toEqual([taskId]);
  // The imaging CLI lists every disk of the instance.
  const [viewed] = JSON.parse((await runCli(endpoints, ['describe-conversion-tasks', taskId, '--json'])).stdout);
  expect(viewed).toMatchObject({ conversionTaskId: taskId, state: 'completed', instanceId, volumeId: volumeIds[0] });
  expect(viewed.disks.map((d: any) => [d.status, d.format, d.volumeId, d.description])).toEqual(disks.map((d, i) => ['completed', d.format, volumeIds[i], `disk ${i + 1}`]));
}, 900_000);

(cli ? test : test.skip)('aws ec2 cancel-conversion-task cancels the instance and every disk; wait conversion-task-cancelled returns; nothing is registered', async () => {
  const aws = (args: string[]) => awsCli(cli!, endpoints.ec2, endpoints.creds, args);
  // Manifests that are never uploaded: every disk waits for its upload until cancelled.
  const manifest = (name: string) => `${endpoints.s3}/instance-disks/never/${name}.manifest.xml`;
  const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportInstance', {
    LaunchSpecification: { Architecture: 'x86_64' },
    DiskImages: ['a', 'b'].map((name) => ({ Image: { Format: 'RAW', Bytes: 1024 * 1024, ImportManifestUrl: manifest(name) }, Volume: { Size: 1 } })),
  });
  const taskId = out.ConversionTask.ConversionTaskId;
  const cancelled = await aws(['cancel-conversion-task', '--conversion-task-id', taskId, '--reason-message', 'wrong disks']);
  expect([cancelled.exitCode, cancelled.stderr]).toEqual([0, '']);
  const waited = await aws(['wait', 'conversion-task-cancelled', '--conversion-task-ids', taskId]);
  expect(waited.exitCode).toBe(0);
  const [task] = JSON.parse((await aws(['describe-conversion-tasks', '--conversion-task-ids', taskId])).stdout).ConversionTasks;
  expect(task).toMatchObject({ State: 'cancelled', StatusMessage: 'wrong disks' });
  expect(task.ImportInstance.Volumes.map((v: any) => v.Status)).toEqual(['cancelled', 'cancelled']);
  expect(await service.tasks.getResource(out.ConversionTask.ImportInstance.InstanceId)).toBeUndefined();
  const again = await aws(['cancel-conversion-task', '--conversion-task-id', taskId]);
  expect(again.exitCode).not.toBe(0);
  expect(again.stderr).toMatch(/IncorrectState/);
}, 300_000);
