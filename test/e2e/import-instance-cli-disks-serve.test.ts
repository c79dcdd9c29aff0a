/**
 * `imaging import-instance` with several disks, through `imaging serve` in-process: the compiled
 * CLI uploads a bootable VMDK, an odd-sized RAW disk and a VHD (FILE argument, then --disk
 * FILE,format=…), makes one ImportInstance call with DiskImage.1..3, and with --wait --json
 * prints the ended conversion task with every volume. Each volume holds the bytes
 * `qemu-img convert -O raw` makes of its disk; the instance has the volumes in order.
 */
import { readFileSync } from 'fs';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { RunningService } from '../../cli/serve';
import type { InstanceRecord, VolumeRecord } from '../../tasks/task';
import { tempDir } from '../helpers/disk-corpus';
import { makeInstanceDisks, type InstanceDisk } from '../helpers/instance-disks';
import { clientFor, objectBytes, runCli, sha256, startTestService, type Endpoints } from './import-driver';

let service: RunningService;
let endpoints: Endpoints;
let dir: string;
let disks: InstanceDisk[] = [];

beforeAll(async () => {
  dir = tempDir('e2e-instance-cli-');
  disks = makeInstanceDisks(dir, 31);
  ({ service, endpoints } = await startTestService(dir));
}, 120_000);

afterAll(async () => {
  await service?.stop();
});

test('three disks in three formats: one ImportInstance; --wait --json prints the completed task with every volume; each volume is qemu-img\'s bytes', async () => {
  const { stdout, stderr } = await runCli(endpoints, [
    'import-instance', disks[0].path, '--format', 'vmdk',
    '--disk', `${disks[1].path},format=raw,description=data disk`,
    '--disk', `format=VHD,volume-size=2,file=${disks[2].path}`,
    '--disk-description', 'from the cli', '--description', 'three disks from the cli',
    '--bucket', 'cli-disks', '--prefix', 'inst/', '--part-size', '1', '--availability-zone', 'local-1b',
    '--no-progress', '--wait', '--json',
  ]);
  expect(stderr).toBe('');
  const task = JSON.parse(stdout);
  expect(task).toMatchObject({ state: 'completed', description: 'three disks from the cli', format: 'VMDK' });
  expect(task.conversionTaskId).toMatch(/^import-i-[0-9a-f]{8}$/);
  expect(task.disks.map((d: any) => [d.status, d.format, d.description, d.bytesConverted, d.imageSha256, d.progress])).toEqual([
    ['completed', 'VMDK', 'from the cli', disks[0].reference.length, sha256(disks[0].reference), 100],
    ['completed', 'RAW', 'data disk', disks[1].reference.length, sha256(disks[1].reference), 100],
    ['completed', 'VHD', 'from the cli', disks[2].reference.length, sha256(disks[2].reference), 100],
  ]);
  expect(task.disks.map((d: any) => d.volumeSizeGiB)).toEqual([1, 1, 2]);
  const volumeIds: string[] = task.disks.map((d: any) => d.volumeId);
  expect(new Set(volumeIds).size).toBe(3);

  // Each volume holds the bytes qemu-img makes of its disk.
  for (const [i, volumeId] of volumeIds.entries()) {
    const record = (await service.tasks.getResource(volumeId)) as VolumeRecord;
    expect(record).toMatchObject({ kind: 'volume', availabilityZone: 'local-1b' });
    const stored = await objectBytes(service.s3, record.image.bucket, record.image.key);
    expect([i, stored.length, sha256(stored)]).toEqual([i, disks[i].reference.length, sha256(disks[i].reference)]);
  }
  const instance = (await service.tasks.getResource(task.instanceId)) as InstanceRecord;
  expect(instance).toMatchObject({ kind: 'instance', state: 'stopped', taskId: task.conversionTaskId, volumeIds });

  // Each disk was uploaded under a folder of its own below --prefix, in 1 MiB parts, with its manifest.
  const { s3 } = await clientFor(endpoints);
  const keys = ((await s3.send(new ListObjectsV2Command({ Bucket: 'cli-disks', Prefix: 'inst/' }))).Contents ?? []).map((o) => o.Key!);
  for (const [i, d] of disks.entries()) {
    const name = d.path.split('/').pop();
    const parts = keys.filter((k) => k.startsWith(`inst/disk${i + 1}/${name}.part.`));
    expect([i, parts.length, keys.includes(`inst/disk${i + 1}/${name}.manifest.xml`)]).toEqual([i, Math.ceil(readFileSync(d.path).length / 2 ** 20), true]);
  }

  // The text view lists every disk.
  const text = (await runCli(endpoints, ['describe-conversion-tasks', task.conversionTaskId])).stdout;
  for (const [i, volumeId] of volumeIds.entries()) expect(text).toMatch(new RegExp(`disk ${i + 1} +completed  ${disks[i].format}  ${volumeId}`));
}, 300_000);

test('without --wait, --json prints the task as ImportInstance answered it, every volume active; a disk with no format is refused before any upload', async () => {
  const { stdout } = await runCli(endpoints, ['import-instance', '--disk', `${disks[1].path},format=RAW`, '--disk', `${disks[2].path},format=VHD`, '--bucket', 'cli-disks-2', '--no-progress', '--json']);
  const created = JSON.parse(stdout);
  expect(created.conversionTaskId).toMatch(/^import-i-[0-9a-f]{8}$/);
  expect(created.disks.map((d: any) => [d.format, d.bytes])).toEqual([['RAW', readFileSync(disks[1].path).length], ['VHD', readFileSync(disks[2].path).length]]);
  expect(created.conversionTask).toMatchObject({ conversionTaskId: created.conversionTaskId, instanceId: created.instanceId, state: 'active' });
  expect(created.conversionTask.disks.map((d: any) => [d.status, d.format])).toEqual([['active', 'RAW'], ['active', 'VHD']]);
  await runCli(endpoints, ['cancel-conversion-task', created.conversionTaskId]).catch(() => undefined);

  // A file argument with no --format and no format= is refused before anything is uploaded.
  const refused = await runCli(endpoints, ['import-instance', disks[1].path, '--disk', `${disks[2].path},format=VHD`, '--bucket', 'cli-disks-3', '--no-progress']).then(
    () => undefined,
    (err: { code: number; stderr: string }) => err,
  );
  expect(refused?.code).toBe(1);
  expect(refused?.stderr).toMatch(/data\.raw: no format; give --format/);
  // A disk whose format is not what it says is refused too, naming the file.
  const mismatch = await runCli(endpoints, ['import-instance', disks[0].path, '--format', 'VMDK', '--disk', `${disks[1].path},format=VHD`, '--bucket', 'cli-disks-3', '--no-progress']).then(
    () => undefined,
    (err: { code: number; stderr: string }) => err,
  );
  expect(mismatch?.code).toBe(1);
  expect(mismatch?.stderr).toMatch(/data\.raw: /);
  const { s3 } = await clientFor(endpoints);
  const leftover = await s3.send(new ListObjectsV2Command({ Bucket: 'cli-disks-3' })).then((r) => r.Contents ?? [], () => []);
  expect(leftover).toEqual([]);
}, 120_000);
