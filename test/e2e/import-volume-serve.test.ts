/**
 * The whole import path in one process (`imaging serve` as a library), driven by boto3,
 * @aws-sdk/client-ec2 and the imaging CLI, with byte comparison of what lands in the image store.
 */
import { execFileSync } from 'child_process';
import { statSync, writeFileSync } from 'fs';
import { join } from 'path';
import { DescribeConversionTasksCommand, ImportVolumeCommand, CancelConversionTaskCommand } from '@aws-sdk/client-ec2';
import { GetObjectCommand, PutObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { RunningService } from '../../cli/serve';
import { makeRawDisk, qemuToRaw, seededBytes, tempDir } from '../helpers/disk-corpus';
import { boto3Call, sdkClient } from '../helpers/ec2-clients';
import { manifestKeyFor } from '../../cli/commands/import-volume';
import { buildImportManifest, partRanges } from '../../toolkit/bundle/import-manifest';
import { clientFor, fileSha256, objectBytes, putWithUrl, sha256, upload, waitForTask, type Endpoints, runCli } from './import-driver';
import { startTestService } from './import-driver';

const GiB = 1024 ** 3;

let service: RunningService;
let endpoints: Endpoints;
let dir: string;
let disk: { path: string; size: number };

beforeAll(async () => {
  dir = tempDir('e2e-serve-');
  disk = makeRawDisk(dir);
  ({ service, endpoints } = await startTestService(dir));
});

afterAll(async () => {
  await service?.stop();
});

async function expectStoredImage(taskId: string, expected: Buffer | string) {
  const doc = await service.tasks.get(taskId);
  expect(doc?.state).toBe('completed');
  const image = doc!.artifacts.image!;
  const stored = await objectBytes(service.s3, image.bucket, image.key);
  const want = typeof expected === 'string' ? expected : sha256(expected);
  expect(sha256(stored)).toBe(want);
  expect(image.sha256).toBe(want);
  expect(doc!.bytesConverted).toBe(stored.length);
  return doc!;
}

test('boto3: ImportVolume of a RAW disk completes and the volume bytes equal the file', async () => {
  const up = await upload(endpoints, disk.path, 'boto3-bucket');
  const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportVolume', {
    Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl },
    Volume: { Size: up.volumeSizeGiB },
    AvailabilityZone: 'local-1a',
    Description: 'e2e boto3',
  });
  const taskId = out.ConversionTask.ConversionTaskId;
  expect(taskId).toMatch(/^import-vol-[0-9a-f]{8}$/);
  expect(out.ConversionTask.ImportVolume.Image.Format).toBe('RAW');
  const done = await waitForTask(endpoints, taskId);
  expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
  expect(done.ImportVolume.Volume.Id).toMatch(/^vol-[0-9a-f]{17}$/);
  expect(done.ImportVolume.BytesConverted).toBe(disk.size);
  expect(done.ImportVolume.Image.Checksum).toBe(fileSha256(disk.path));
  await expectStoredImage(taskId, fileSha256(disk.path));
});

test('@aws-sdk/client-ec2: import, describe; cancel of a completed task is refused', async () => {
  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
  const up = await upload(endpoints, disk.path, 'sdk-bucket');
  const created = await ec2.send(new ImportVolumeCommand({
    Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl },
    Volume: { Size: up.volumeSizeGiB },
    AvailabilityZone: 'local-1a',
  }));
  const taskId = created.ConversionTask!.ConversionTaskId!;
  const done = await waitForTask(endpoints, taskId);
  expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
  const described = await ec2.send(new DescribeConversionTasksCommand({ ConversionTaskIds: [taskId] }));
  expect(described.ConversionTasks![0].State).toBe('completed');
  expect(described.ConversionTasks![0].ImportVolume!.Volume!.Id).toMatch(/^vol-/);
  await expect(ec2.send(new CancelConversionTaskCommand({ ConversionTaskId: taskId }))).rejects.toMatchObject({ name: 'IncorrectState' });
  await expectStoredImage(taskId, fileSha256(disk.path));
});

test('the imaging CLI: import-volume, describe-conversion-tasks --json shows location and SHA-256', async () => {
  const imported = await runCli(endpoints, ['import-volume', disk.path, '--format', 'RAW', '--bucket', 'cli-bucket', '--wait']);
  const [taskId, summary] = imported.stdout.split('\n');
  expect(taskId).toMatch(/^import-vol-[0-9a-f]{8}$/);
  expect(summary).toBe(`${taskId}  completed  100%`);
  const described = await runCli(endpoints, ['describe-conversion-tasks', taskId, '--json']);
  const [task] = JSON.parse(described.stdout);
  expect(task).toMatchObject({ conversionTaskId: taskId, state: 'completed', imageSha256: fileSha256(disk.path), bytesConverted: disk.size });
  expect(task.imageLocation).toMatch(new RegExp(`^s3://imaging-images/images/${taskId}/`));
  const text = await runCli(endpoints, ['describe-conversion-tasks']);
  expect(text.stdout).toContain(taskId);
  const cancel = await runCli(endpoints, ['cancel-conversion-task', taskId]).catch((e) => e);
  expect(cancel.code).toBe(2);
  expect(cancel.stderr).toMatch(/^error: IncorrectState: /);
});

test('the manifest may be uploaded after the ImportVolume call', async () => {
  const ctx = await clientFor(endpoints);
  const prefix = 'late/';
  const bucket = 'late-bucket';
  await ctx.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'placeholder', Body: 'x' })).catch(async () => {
    const { CreateBucketCommand } = await import('@aws-sdk/client-s3');
    await ctx.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  });
  const manifestUrl = await getSignedUrl(ctx.s3, new GetObjectCommand({ Bucket: bucket, Key: manifestKeyFor(prefix, disk.path) }), { expiresIn: 3600 });
  const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportVolume', {
    Image: { Format: 'RAW', Bytes: disk.size, ImportManifestUrl: manifestUrl },
    Volume: { Size: 1 },
    AvailabilityZone: 'local-1a',
  });
  const taskId = out.ConversionTask.ConversionTaskId;
  await new Promise((r) => setTimeout(r, 800));
  const waiting = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeConversionTasks', { ConversionTaskIds: [taskId] });
  expect(waiting.ConversionTasks[0]).toMatchObject({ State: 'active', StatusMessage: 'Pending import-image upload' });
  await upload(endpoints, disk.path, bucket, { prefix });
  const done = await waitForTask(endpoints, taskId);
  expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
  await expectStoredImage(taskId, fileSha256(disk.path));
});

describe.each([
  ['VMDK', 'vmdk', ['-o', 'subformat=streamOptimized']],
  ['VHD', 'vpc', ['-o', 'subformat=dynamic']],
])('ImportVolume of a %s image', (format, qemuFormat, qemuOptions) => {
  test('converts to the same raw bytes as qemu-img convert', async () => {
    const image = join(dir, `disk.${qemuFormat}`);
    execFileSync('qemu-img', ['convert', '-O', qemuFormat, ...qemuOptions, disk.path, image]);
    const reference = qemuToRaw(image, join(dir, `reference-${qemuFormat}.raw`));
    const up = await upload(endpoints, image, `${qemuFormat}-bucket`, { format: format as 'VMDK' });
    const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportVolume', {
      Image: { Format: format, Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB }, AvailabilityZone: 'z',
    });
    const done = await waitForTask(endpoints, out.ConversionTask.ConversionTaskId);
    expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
    const doc = await expectStoredImage(out.ConversionTask.ConversionTaskId, reference);
    expect(doc.artifacts.validation?.partitionTable).toBe('mbr');
  });
});

test('an image that is not the declared format fails with a ClientError naming both', async () => {
  const image = join(dir, 'mismatch.vmdk');
  execFileSync('qemu-img', ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', disk.path, image]);
  // Our CLI refuses the wrong --format before uploading; another client might not.
  await expect(upload(endpoints, image, 'mismatch-bucket', { format: 'RAW' })).rejects.toThrow(/mismatch\.vmdk: .*RAW.*VMDK|mismatch\.vmdk: .*raw.*vmdk/i);
  const up = await upload(endpoints, image, 'mismatch-bucket', { format: 'VMDK' });
  const manifest = (await objectBytes((await clientFor(endpoints)).s3, 'mismatch-bucket', `${up.prefix}mismatch.vmdk.manifest.xml`)).toString().replace('<file-format>VMDK</file-format>', '<file-format>VHD</file-format>');
  const url = await putWithUrl((await clientFor(endpoints)).s3, 'mismatch-bucket', 'mismatch-manifest.xml', manifest);
  const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportVolume', {
    Image: { Format: 'VHD', Bytes: up.size, ImportManifestUrl: url }, Volume: { Size: 1 }, AvailabilityZone: 'z',
  });
  const task = await waitForTask(endpoints, out.ConversionTask.ConversionTaskId);
  expect(task.State).toBe('cancelled');
  expect(task.StatusMessage).toMatch(/^ClientError: .*VHD.*VMDK|^ClientError: .*vhd.*vmdk/i);
});

describe('bad input ends with a clear message and the service keeps serving', () => {
  async function importWithManifest(body: string | Buffer, size = disk.size) {
    const ctx = await clientFor(endpoints);
    const url = await putWithUrl(ctx.s3, 'bad-bucket', `m-${Math.random()}.xml`, body).catch(async () => {
      const { CreateBucketCommand } = await import('@aws-sdk/client-s3');
      await ctx.s3.send(new CreateBucketCommand({ Bucket: 'bad-bucket' }));
      return putWithUrl(ctx.s3, 'bad-bucket', `m-${Math.random()}.xml`, body);
    });
    const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportVolume', {
      Image: { Format: 'RAW', Bytes: size, ImportManifestUrl: url }, Volume: { Size: 1 }, AvailabilityZone: 'local-1a',
    });
    return waitForTask(endpoints, out.ConversionTask.ConversionTaskId);
  }

  /** A manifest over real uploaded parts, with `edit` applied to the part list. */
  async function manifestOverParts(edit: (parts: any[]) => any[], size = disk.size) {
    const ctx = await clientFor(endpoints);
    const up = await upload(endpoints, disk.path, 'bad-bucket', { prefix: `parts-${Math.random()}/` });
    const keys = partRanges(disk.size, 10 * 2 ** 20).map((r) => `${up.prefix}disk.raw.part.${r.index}`);
    const sign = (cmd: any) => getSignedUrl(ctx.s3, cmd, { expiresIn: 3600 });
    const parts = await Promise.all(partRanges(disk.size, 10 * 2 ** 20).map(async (r, i) => ({
      ...r, key: keys[i],
      headUrl: await sign(new HeadObjectCommand({ Bucket: 'bad-bucket', Key: keys[i] })),
      getUrl: await sign(new GetObjectCommand({ Bucket: 'bad-bucket', Key: keys[i] })),
    })));
    return buildImportManifest({ version: '2010-11-15', fileFormat: 'RAW', size, volumeSizeGiB: 1, parts: edit(parts) });
  }

  test('a manifest that is not XML', async () => {
    const task = await importWithManifest('this is not a manifest {');
    expect(task.State).toBe('cancelled');
    expect(task.StatusMessage).toMatch(/^ClientError: the import manifest is not/);
  });

  test('overlapping byte ranges', async () => {
    const task = await importWithManifest(await manifestOverParts((parts) => parts.map((p, i) => (i === 1 ? { ...p, start: p.start - 100 } : p))));
    expect(task.StatusMessage).toMatch(/^ClientError: part 1 of the import manifest overlaps/);
  });

  test('a gap between byte ranges', async () => {
    const task = await importWithManifest(await manifestOverParts((parts) => parts.map((p, i) => (i === 2 ? { ...p, start: p.start + 512 } : p))));
    expect(task.StatusMessage).toMatch(/^ClientError: the import manifest leaves a gap/);
  });

  test('ranges past the declared size', async () => {
    const task = await importWithManifest(await manifestOverParts((parts) => parts, disk.size - 4096));
    expect(task.StatusMessage).toMatch(/^ClientError: part \d+ of the import manifest ends at byte \d+, past the declared size/);
  });

  test('a part whose size differs from its byte range', async () => {
    const xml = await manifestOverParts((parts) => {
      const last = parts.length - 1;
      // Parts 0 and 1 swap their byte ranges' meaning: part 0 keeps its URL but claims fewer bytes.
      return parts.map((p, i) => (i === 0 ? { ...p, end: p.end - 1000 } : i === 1 ? { ...p, start: p.start - 1000 } : p)).slice(0, last + 1);
    });
    const task = await importWithManifest(xml);
    expect(task.StatusMessage).toMatch(/^ClientError: part [01] \(.*\) is 10485760 bytes but its byte range \d+-\d+ needs 104(84760|86760)/);
  });

  test('a part URL on a foreign host', async () => {
    const xml = await manifestOverParts((parts) => parts.map((p, i) => (i === 1 ? { ...p, getUrl: 'http://169.254.169.254/latest/meta-data/' } : p)));
    const task = await importWithManifest(xml);
    expect(task.StatusMessage).toMatch(/^ClientError: the part 1 get URL is refused: host 169\.254\.169\.254 is not an object-storage endpoint/);
  });

  test('a manifest URL on a foreign host is refused by the API', async () => {
    await expect(boto3Call(endpoints.ec2, endpoints.creds, 'ImportVolume', {
      Image: { Format: 'RAW', Bytes: 1000, ImportManifestUrl: 'http://169.254.169.254/manifest.xml' }, Volume: { Size: 1 }, AvailabilityZone: 'z',
    })).rejects.toMatchObject({ code: 'InvalidParameterValue' });
  });

  test('Volume.Size smaller than the image is refused by the API', async () => {
    const up = await upload(endpoints, disk.path, 'bad-bucket', { prefix: 'small/' });
    await expect(boto3Call(endpoints.ec2, endpoints.creds, 'ImportVolume', {
      Image: { Format: 'RAW', Bytes: 2 * GiB, ImportManifestUrl: up.manifestUrl }, Volume: { Size: 1 }, AvailabilityZone: 'z',
    })).rejects.toMatchObject({ code: 'InvalidParameterValue' });
  });

  test('after all that, a good import still completes', async () => {
    const small = join(dir, 'small.raw');
    writeFileSync(small, seededBytes(3 * 2 ** 20 + 17, 99));
    const up = await upload(endpoints, small, 'after-bucket', { partSizeMiB: 1 });
    const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportVolume', {
      Image: { Format: 'RAW', Bytes: statSync(small).size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: 1 }, AvailabilityZone: 'z',
    });
    const done = await waitForTask(endpoints, out.ConversionTask.ConversionTaskId);
    expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
    await expectStoredImage(out.ConversionTask.ConversionTaskId, fileSha256(small));
  });
});

test('a task whose upload never completes is cancelled when it expires', async () => {
  const { service: expiring, endpoints: ep } = await startTestService(join(dir, 'expiry'), { uploadPollMs: '100', taskLifetimeHours: String(2 / 3600) });
  try {
    const ctx = await clientFor(ep);
    const manifestUrl = await getSignedUrl(ctx.s3, new GetObjectCommand({ Bucket: 'never', Key: 'never.xml' }), { expiresIn: 3600 });
    const out = await boto3Call(ep.ec2, ep.creds, 'ImportVolume', {
      Image: { Format: 'RAW', Bytes: 1000, ImportManifestUrl: manifestUrl }, Volume: { Size: 1 }, AvailabilityZone: 'z',
    });
    const task = await waitForTask(ep, out.ConversionTask.ConversionTaskId, 20_000);
    expect(task.State).toBe('cancelled');
    expect(task.StatusMessage).toMatch(/^ClientError: the upload was not complete when the task expired at .*; still missing the import manifest/);
  } finally {
    await expiring.stop();
  }
});

test('a task cancelled while waiting for its upload ends cancelled with the reason', async () => {
  const ctx = await clientFor(endpoints);
  const manifestUrl = await getSignedUrl(ctx.s3, new GetObjectCommand({ Bucket: 'never', Key: 'never.xml' }), { expiresIn: 3600 });
  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
  const created = await ec2.send(new ImportVolumeCommand({ Image: { Format: 'RAW', Bytes: 1000, ImportManifestUrl: manifestUrl }, Volume: { Size: 1 }, AvailabilityZone: 'z' }));
  const taskId = created.ConversionTask!.ConversionTaskId!;
  await ec2.send(new CancelConversionTaskCommand({ ConversionTaskId: taskId, ReasonMessage: 'changed my mind' }));
  const task = await waitForTask(endpoints, taskId, 10_000);
  expect(task).toMatchObject({ State: 'cancelled', StatusMessage: 'changed my mind' });
});

test('an unknown access key is refused', async () => {
  await expect(boto3Call(endpoints.ec2, { accessKeyId: 'AKIAOTHER', secretAccessKey: 'x' }, 'DescribeConversionTasks', {}))
    .rejects.toMatchObject({ code: 'AuthFailure' });
});
