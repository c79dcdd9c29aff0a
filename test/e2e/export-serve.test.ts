/**
 * Export through `imaging serve` in-process: a bootable guest disk made with sfdisk + mkfs.ext4 -d
 * is imported as a VMDK (ImportInstance through boto3), then exported with boto3's and the AWS
 * CLI v2's CreateInstanceExportTask as VMDK, VHD (dynamic and fixed), RAW and OVA into a bucket
 * of the caller. qemu-img must accept
 * every exported file and convert it back to the imported raw bytes exactly; the OVA's OVF must
 * parse and name the disk's capacity. Another account's instance cannot be exported, and a
 * cancel mid-way leaves no object (and no multipart upload) behind.
 */
import { execFileSync } from 'child_process';
import { randomBytes } from 'crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { CreateBucketCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { RunningService } from '../../cli/serve';
import { parseOvf } from '../../toolkit/formats/ova/ovf-descriptor';
import { qemuImg, qemuToRaw, tempDir } from '../helpers/disk-corpus';
import { awsCli, awsCliPath, boto3Call, boto3Calls } from '../helpers/ec2-clients';
import { clientFor, objectBytes, runCli, sha256, startTestService, upload, waitForTask, type Endpoints } from './import-driver';
import { makeGuestDisk, vhdDiskType, waitForExportEnd } from './export-driver';

jest.setTimeout(180_000);

const BUCKET = 'user-exports';
let service: RunningService;
let endpoints: Endpoints;
let dir: string;
let reference: Buffer;
let instanceId: string;

beforeAll(async () => {
  dir = tempDir('e2e-export-');
  // A system disk validation accepts (another account's OS-less disk would be refused).
  const { vmdk } = makeGuestDisk(dir);
  reference = qemuToRaw(vmdk, join(dir, 'reference.raw'));
  ({ service, endpoints } = await startTestService(dir));
  const up = await upload(endpoints, vmdk, 'export-source', { format: 'VMDK' });
  const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportInstance', {
    LaunchSpecification: { Architecture: 'x86_64' },
    DiskImages: [{ Image: { Format: 'VMDK', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB } }],
  });
  const done = await waitForTask(endpoints, out.ConversionTask.ConversionTaskId);
  expect(done.State).toBe('completed');
  instanceId = out.ConversionTask.ImportInstance.InstanceId;
  // The user's bucket, made with the user's key: the embedded S3 gives each account its own buckets.
  const user = await clientFor(endpoints);
  await user.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  user.s3.destroy();
});

afterAll(async () => {
  await service?.stop();
});

/**
 * Polls with @aws-sdk/client-ec2 (a python process per boto3 poll costs seconds on a loaded
 * machine) until the task leaves active/cancelling; the final answer is read through boto3.
 */
async function waitForExport(taskId: string, timeoutMs = 90_000): Promise<any> {
  await waitForExportEnd(endpoints.ec2, endpoints.creds, taskId, timeoutMs);
  return (await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeExportTasks', { ExportTaskIds: [taskId] })).ExportTasks[0];
}

/** Exports through boto3, waits, downloads the object; returns the local path and the task. */
async function exportAs(exportToS3: Record<string, string>, targetEnvironment: string, name: string) {
  const created = (await boto3Call(endpoints.ec2, endpoints.creds, 'CreateInstanceExportTask', {
    InstanceId: instanceId,
    TargetEnvironment: targetEnvironment,
    Description: `e2e ${name}`,
    ExportToS3Task: { S3Bucket: BUCKET, S3Prefix: 'exports/', ...exportToS3 },
  })).ExportTask;
  expect(created.ExportTaskId).toMatch(/^export-i-[0-9a-f]{17}$/);
  expect(created.State).toBe('active');
  expect(created.InstanceExportDetails).toEqual({ InstanceId: instanceId, TargetEnvironment: targetEnvironment });
  const done = await waitForExport(created.ExportTaskId);
  expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
  expect(done.ExportToS3Task.S3Key).toBe(created.ExportToS3Task.S3Key);
  const path = join(dir, name);
  writeFileSync(path, await objectBytes(service.s3, BUCKET, done.ExportToS3Task.S3Key));
  return { path, task: done };
}

function expectSameDisk(path: string, format: string) {
  // qemu-img check has no checks for vpc (VHD): it must open the file and report the disk's size.
  if (format === 'vpc') expect(JSON.parse(qemuImg('info', '--output=json', '-f', format, path))['virtual-size']).toBe(reference.length);
  else if (format !== 'raw') qemuImg('check', '-f', format, path);
  const back = qemuToRaw(path, `${path}.back.raw`, format);
  expect(back.length).toBe(reference.length);
  expect(sha256(back)).toBe(sha256(reference));
}

test('boto3: VMDK (vmware default), VHD (citrix dynamic, microsoft fixed), RAW convert back to the imported bytes', async () => {
  const vmdk = await exportAs({}, 'vmware', 'out.vmdk');
  expect(vmdk.task.ExportToS3Task).toMatchObject({ DiskImageFormat: 'VMDK', S3Bucket: BUCKET, S3Key: `exports/${vmdk.task.ExportTaskId}.vmdk` });
  expect(qemuImg('info', '--output=json', vmdk.path)).toContain('streamOptimized');
  expectSameDisk(vmdk.path, 'vmdk');

  const vhd = await exportAs({ DiskImageFormat: 'VHD' }, 'citrix', 'out.vhd');
  expect(vhd.task.ExportToS3Task.S3Key).toBe(`exports/${vhd.task.ExportTaskId}.vhd`);
  expect(vhdDiskType(vhd.path)).toBe('dynamic');
  expectSameDisk(vhd.path, 'vpc');

  const fixed = await exportAs({ DiskImageFormat: 'VHD' }, 'microsoft', 'out-fixed.vhd');
  // A fixed VHD is the disk followed by a 512-byte footer.
  expect(readFileSync(fixed.path).length).toBe(reference.length + 512);
  expect(vhdDiskType(fixed.path)).toBe('fixed');
  expectSameDisk(fixed.path, 'vpc');

  const raw = await exportAs({ DiskImageFormat: 'RAW' }, 'citrix', 'out.raw');
  expect(raw.task.ExportToS3Task.S3Key).toBe(`exports/${raw.task.ExportTaskId}.raw`);
  expectSameDisk(raw.path, 'raw');
});

test('boto3: an OVA holds an OVF naming the disk and its capacity, and a VMDK that converts back', async () => {
  const ova = await exportAs({ DiskImageFormat: 'VMDK', ContainerFormat: 'ova' }, 'vmware', 'out.ova');
  expect(ova.task.ExportToS3Task).toMatchObject({ ContainerFormat: 'ova', DiskImageFormat: 'VMDK', S3Key: `exports/${ova.task.ExportTaskId}.ova` });
  const unpacked = join(dir, 'ova');
  mkdirSync(unpacked);
  execFileSync('tar', ['-xf', ova.path, '-C', unpacked]);
  const members = execFileSync('tar', ['-tf', ova.path], { encoding: 'utf8' }).trim().split('\n');
  expect(members[0]).toMatch(/\.ovf$/);
  const ovfText = readFileSync(join(unpacked, members[0]), 'utf8');
  const ovf = parseOvf(ovfText);
  expect(ovf.disks).toHaveLength(1);
  expect(ovf.disks[0].capacityBytes).toBe(reference.length);
  expect(ovf.disks[0].format).toContain('streamOptimized');
  expect(ovfText).toContain('OperatingSystemSection');
  expect(ovfText).toContain('VirtualHardwareSection');
  expectSameDisk(join(unpacked, ovf.disks[0].file.href), 'vmdk');
});

test('an instance of another account, or none, cannot be exported; ids that are not export tasks are refused', async () => {
  // Another account's imported instance, as its own import would have recorded it.
  const createdAt = new Date().toISOString();
  const image = { bucket: 'imaging-images', key: 'images/other/disk.raw', size: 1024 * 1024 };
  await service.tasks.putResource({ id: 'vol-0aaaaaaaaaaaaaaaa', kind: 'volume', accountId: '999999999999', taskId: 'import-i-aaaaaaaa', sizeGiB: 1, image, createdAt });
  await service.tasks.putResource({
    id: 'i-0aaaaaaaaaaaaaaaa', kind: 'instance', accountId: '999999999999', taskId: 'import-i-aaaaaaaa', state: 'stopped',
    volumeIds: ['vol-0aaaaaaaaaaaaaaaa'], architecture: 'x86_64', createdAt,
  });
  const creds = endpoints.creds;
  const exportOf = (id: string, exportToS3: Record<string, string> = { S3Bucket: BUCKET, DiskImageFormat: 'VMDK' }) =>
    ({ creds, operation: 'CreateInstanceExportTask', params: { InstanceId: id, TargetEnvironment: 'vmware', ExportToS3Task: exportToS3 } });
  const outcomes = await boto3Calls(endpoints.ec2, [
    exportOf('i-0aaaaaaaaaaaaaaaa'), // another account's
    exportOf('i-0bbbbbbbbbbbbbbbb'), // nobody's
    exportOf('i-nothex'),
    exportOf(instanceId, { S3Bucket: BUCKET, DiskImageFormat: 'RAW', ContainerFormat: 'ova' }),
    { creds, operation: 'DescribeExportTasks', params: { ExportTaskIds: ['export-i-0123456789abcdef0'] } },
    { creds, operation: 'CancelExportTask', params: { ExportTaskId: 'export-i-0123456789abcdef0' } },
    { creds, operation: 'DescribeConversionTasks', params: {} },
  ]);
  const codes = outcomes.map((o) => (o.ok ? 'ok' : o.error.code));
  expect(codes).toEqual([
    'InvalidInstanceID.NotFound', 'InvalidInstanceID.NotFound', 'InvalidInstanceID.Malformed', 'InvalidParameterValue',
    'InvalidExportTaskID.NotFound', 'InvalidExportTaskID.NotFound', 'ok',
  ]);
  // Export tasks do not show among conversion tasks.
  const conversions = (outcomes[6] as { response: any }).response;
  expect(conversions.ConversionTasks.length).toBeGreaterThan(0);
  expect(conversions.ConversionTasks.every((t: any) => /^import-/.test(t.ConversionTaskId))).toBe(true);
});

test('cancel mid-way: the task ends cancelled and nothing is left in the bucket', async () => {
  // A large incompressible disk, recorded as the caller's own imported instance, so the VMDK export runs for seconds.
  const size = 192 * 1024 * 1024;
  const key = 'images/cancel-test/disk.raw';
  await service.s3.send(new PutObjectCommand({ Bucket: 'imaging-images', Key: key, Body: randomBytes(size) }));
  const accountId = service.credentials.accountId;
  const createdAt = new Date().toISOString();
  await service.tasks.putResource({ id: 'vol-0cccccccccccccccc', kind: 'volume', accountId, taskId: 'import-i-cccccccc', sizeGiB: 1, image: { bucket: 'imaging-images', key, size }, createdAt });
  await service.tasks.putResource({
    id: 'i-0cccccccccccccccc', kind: 'instance', accountId, taskId: 'import-i-cccccccc', state: 'stopped',
    volumeIds: ['vol-0cccccccccccccccc'], architecture: 'x86_64', createdAt,
  });
  const created = (await boto3Call(endpoints.ec2, endpoints.creds, 'CreateInstanceExportTask', {
    InstanceId: 'i-0cccccccccccccccc', TargetEnvironment: 'vmware', ExportToS3Task: { S3Bucket: BUCKET, S3Prefix: 'cancelled/', DiskImageFormat: 'VMDK' },
  })).ExportTask;
  const deadline = Date.now() + 60_000;
  while (((await service.tasks.get(created.ExportTaskId))!.bytesConverted ?? 0) === 0) {
    if (Date.now() > deadline) throw new Error('the export never started');
    await new Promise((r) => setTimeout(r, 50));
  }
  await boto3Call(endpoints.ec2, endpoints.creds, 'CancelExportTask', { ExportTaskId: created.ExportTaskId });
  const done = await waitForExport(created.ExportTaskId);
  expect([done.State, done.StatusMessage]).toEqual(['cancelled', 'Canceled by user']);
  await expect(service.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: created.ExportToS3Task.S3Key }))).rejects.toMatchObject({ name: 'NotFound' });
  const listed = await service.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'cancelled/' }));
  expect(listed.Contents ?? []).toEqual([]);
  // s3rver may not list uploads; where it does, none may remain.
  const uploads = await service.s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: 'cancelled/' })).catch(() => undefined);
  if (uploads) expect(uploads.Uploads ?? []).toEqual([]);
  await expect(boto3Call(endpoints.ec2, endpoints.creds, 'CancelExportTask', { ExportTaskId: created.ExportTaskId })).rejects.toMatchObject({ code: 'IncorrectState' });
});

const cli = awsCliPath();
const CLI_CASES = [
  { env: 'vmware', spec: 'DiskImageFormat=VMDK', ext: 'vmdk', qemu: 'vmdk' },
  { env: 'citrix', spec: 'DiskImageFormat=VHD', ext: 'vhd', qemu: 'vpc', vhd: 'dynamic' },
  { env: 'microsoft', spec: 'DiskImageFormat=VHD', ext: 'vhd', qemu: 'vpc', vhd: 'fixed' },
  { env: 'citrix', spec: 'DiskImageFormat=RAW', ext: 'raw', qemu: 'raw' },
  { env: 'vmware', spec: 'DiskImageFormat=VMDK,ContainerFormat=ova', ext: 'ova', qemu: 'ova' },
] as const;
(cli ? test.each : test.skip.each)(CLI_CASES)('AWS CLI v2: create-instance-export-task --target-environment $env --export-to-s3-task $spec; describe-export-tasks', async (c) => {
  const created = await awsCli(cli!, endpoints.ec2, endpoints.creds, [
    'create-instance-export-task', '--instance-id', instanceId, '--target-environment', c.env,
    '--export-to-s3-task', `${c.spec},S3Bucket=${BUCKET},S3Prefix=cli/`,
  ]);
  expect(created.stderr).toBe('');
  const task = JSON.parse(created.stdout).ExportTask;
  expect(task.ExportToS3Task.S3Key).toBe(`cli/${task.ExportTaskId}.${c.ext}`);
  const done = await waitForExport(task.ExportTaskId);
  expect(done.State).toBe('completed');
  const described = await awsCli(cli!, endpoints.ec2, endpoints.creds, ['describe-export-tasks', '--export-task-ids', task.ExportTaskId]);
  expect(JSON.parse(described.stdout).ExportTasks[0]).toMatchObject({ ExportTaskId: task.ExportTaskId, State: 'completed', InstanceExportDetails: { InstanceId: instanceId, TargetEnvironment: c.env } });
  const path = join(dir, `cli-${c.env}-${task.ExportTaskId}.${c.ext}`);
  writeFileSync(path, await objectBytes(service.s3, BUCKET, task.ExportToS3Task.S3Key));
  if (c.qemu === 'ova') {
    const unpacked = join(dir, 'cli-ova');
    mkdirSync(unpacked);
    execFileSync('tar', ['-xf', path, '-C', unpacked]);
    const ovf = parseOvf(readFileSync(join(unpacked, execFileSync('tar', ['-tf', path], { encoding: 'utf8' }).split('\n')[0]), 'utf8'));
    expect(ovf.disks[0].capacityBytes).toBe(reference.length);
    expectSameDisk(join(unpacked, ovf.disks[0].file.href), 'vmdk');
    return;
  }
  if ('vhd' in c) {
    expect(vhdDiskType(path)).toBe(c.vhd);
    if (c.vhd === 'fixed') expect(readFileSync(path).length).toBe(reference.length + 512);
  }
  expectSameDisk(path, c.qemu);
});

test('imaging CLI: export-instance --vhd-type fixed (the extension parameter) --wait --json, describe-export-tasks --json', async () => {
  const { stdout } = await runCli(endpoints, [
    'export-instance', instanceId, '--target-environment', 'citrix', '--disk-image-format', 'VHD', '--vhd-type', 'fixed',
    '--bucket', BUCKET, '--prefix', 'imaging-cli/', '--wait', '--json',
  ]);
  const task = JSON.parse(stdout);
  expect(task).toMatchObject({ state: 'completed', progress: 100, diskImageFormat: 'VHD', targetEnvironment: 'citrix', s3Bucket: BUCKET });
  expect(task.s3Key).toBe(`imaging-cli/${task.exportTaskId}.vhd`);
  const described = JSON.parse((await runCli(endpoints, ['describe-export-tasks', task.exportTaskId, '--json'])).stdout);
  expect(described).toEqual([task]);
  const path = join(dir, 'cli-fixed.vhd');
  writeFileSync(path, await objectBytes(service.s3, BUCKET, task.s3Key));
  // citrix alone would be a dynamic VHD; the extension made it fixed: the disk and a 512-byte footer.
  expect(readFileSync(path).length).toBe(reference.length + 512);
  expectSameDisk(path, 'vpc');
});
