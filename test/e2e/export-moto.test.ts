/**
 * Exports against an S3 server we did not write: `imaging serve` in-process with its S3 endpoint
 * on moto_server, which lists multipart uploads (s3rver does not), so what an export leaves in
 * the user's bucket can be seen whole. A cancel mid-way, while the export's multipart upload is
 * open, must leave no object and no upload under the export's prefix, for CreateInstanceExportTask
 * and ExportImage alike; a completed export leaves exactly its one object (the sink's zero-part
 * object is gone) and converts back to the disk's bytes.
 */
import { randomBytes } from 'crypto';
import { readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { CreateBucketCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { RunningService } from '../../cli/serve';
import { tempDir } from '../helpers/disk-corpus';
import { boto3Call } from '../helpers/ec2-clients';
import { describeWithMoto, startMotoServer, type RunningMotoServer } from '../helpers/moto-server';
import { expectSameDisk, makeGuestDisk, waitForExportEnd } from './export-driver';
import { objectBytes, startTestService, type Endpoints } from './import-driver';

jest.setTimeout(180_000);

const BUCKET = 'moto-user-exports';
const IMAGE_BUCKET = 'imaging-images';
const MiB = 1024 ** 2;

describeWithMoto('exports into moto_server: cancel leaves nothing, completion leaves one object', () => {
  let moto: RunningMotoServer;
  let service: RunningService;
  let endpoints: Endpoints;
  let dir: string;

  beforeAll(async () => {
    dir = tempDir('e2e-export-moto-');
    moto = await startMotoServer();
    ({ service, endpoints } = await startTestService(dir, { s3Endpoint: moto.endpoint, s3AccessKeyId: 'MOTO', s3SecretAccessKey: 'MOTO' }));
    await moto.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  }, 120_000);

  afterAll(async () => {
    await service?.stop();
    await moto?.stop();
  });

  /** An imported instance (with its volume) and an imported image (with its snapshot) of the caller, over `body` in the image store. */
  async function seed(body: Buffer): Promise<{ instanceId: string; imageId: string }> {
    const hex = randomBytes(8).toString('hex').slice(0, 16);
    const key = `images/seeded-${hex}/disk.raw`;
    await moto.s3.send(new PutObjectCommand({ Bucket: IMAGE_BUCKET, Key: key, Body: body }));
    const image = { bucket: IMAGE_BUCKET, key, size: body.length };
    const accountId = service.credentials.accountId;
    const createdAt = new Date().toISOString();
    const id = (prefix: string) => `${prefix}-0${hex}`;
    await service.tasks.putResource({ id: id('vol'), kind: 'volume', accountId, taskId: 'import-i-0000abcd', sizeGiB: 1, image, createdAt });
    await service.tasks.putResource({ id: id('i'), kind: 'instance', accountId, taskId: 'import-i-0000abcd', state: 'stopped', volumeIds: [id('vol')], architecture: 'x86_64', createdAt });
    await service.tasks.putResource({ id: id('snap'), kind: 'snapshot', accountId, taskId: `import-ami-0${hex}`, sizeGiB: 1, image, createdAt });
    await service.tasks.putResource({
      id: id('ami'), kind: 'image', accountId, taskId: `import-ami-0${hex}`, name: `seeded-${hex}`, architecture: 'x86_64',
      rootDeviceName: '/dev/sda1', snapshotIds: [id('snap')], sizeGiB: 1, createdAt,
    });
    return { instanceId: id('i'), imageId: id('ami') };
  }

  const uploadsUnder = async (prefix: string) => (await moto.s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: prefix }))).Uploads ?? [];
  const objectsUnder = async (prefix: string) => ((await moto.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }))).Contents ?? []).map((o) => o.Key);

  /** Starts an export through boto3; resolves to its task id and object key. */
  async function startExport(kind: 'instance' | 'image', ids: { instanceId: string; imageId: string }, prefix: string, format: 'VMDK' | 'VHD' | 'RAW'): Promise<{ taskId: string; key: string }> {
    if (kind === 'instance') {
      const task = (await boto3Call(endpoints.ec2, endpoints.creds, 'CreateInstanceExportTask', {
        InstanceId: ids.instanceId, TargetEnvironment: 'vmware', ExportToS3Task: { S3Bucket: BUCKET, S3Prefix: prefix, DiskImageFormat: format },
      })).ExportTask;
      return { taskId: task.ExportTaskId, key: task.ExportToS3Task.S3Key };
    }
    const task = await boto3Call(endpoints.ec2, endpoints.creds, 'ExportImage', { ImageId: ids.imageId, DiskImageFormat: format, S3ExportLocation: { S3Bucket: BUCKET, S3Prefix: prefix } });
    return { taskId: task.ExportImageTaskId, key: `${prefix}${task.ExportImageTaskId}.${format.toLowerCase()}` };
  }

  test.each(['instance', 'image'] as const)('cancel mid-way (%s export): no object and no multipart upload is left', async (kind) => {
    // Incompressible, so that a VMDK export of it runs for seconds.
    const ids = await seed(randomBytes(128 * MiB));
    const prefix = `cancel-${kind}/`;
    const { taskId, key } = await startExport(kind, ids, prefix, 'VMDK');
    // Mid-way: the export's multipart upload is open in the user's bucket.
    const deadline = Date.now() + 90_000;
    while (!(await uploadsUnder(prefix)).some((u) => u.Key === key)) {
      const doc = (await service.tasks.get(taskId))!;
      if (doc.state === 'completed' || Date.now() > deadline) throw new Error(`the export's upload was never seen open (task ${doc.state})`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await boto3Call(endpoints.ec2, endpoints.creds, 'CancelExportTask', { ExportTaskId: taskId });
    const ended = await waitForExportEnd(endpoints.ec2, endpoints.creds, taskId);
    if (kind === 'instance') expect([ended.State, ended.StatusMessage]).toEqual(['cancelled', 'Canceled by user']);
    else expect([ended.Status, ended.StatusMessage]).toEqual(['deleted', 'Canceled by user']);
    expect(await uploadsUnder(prefix)).toEqual([]);
    expect(await objectsUnder(prefix)).toEqual([]);
    await expect(boto3Call(endpoints.ec2, endpoints.creds, 'CancelExportTask', { ExportTaskId: taskId })).rejects.toMatchObject({ code: 'IncorrectState' });
  });

  test.each([
    ['instance', 'VHD', 'vpc'],
    ['image', 'RAW', 'raw'],
  ] as const)('a completed %s export as %s leaves exactly its object, which converts back to the disk', async (kind, format, qemuFormat) => {
    // The guest disk is mostly zeros: whole zero parts go by UploadPartCopy from a zero object in the user's bucket.
    const disk = makeGuestDisk(dir, 64);
    const reference = readFileSync(disk.raw);
    const ids = await seed(reference);
    const prefix = `done-${kind}/`;
    const { taskId, key } = await startExport(kind, ids, prefix, format);
    const ended = await waitForExportEnd(endpoints.ec2, endpoints.creds, taskId);
    expect(ended.State ?? ended.Status).toBe('completed');
    expect(await objectsUnder(prefix)).toEqual([key]);
    expect(await uploadsUnder(prefix)).toEqual([]);
    const path = join(dir, `done-${kind}.${format.toLowerCase()}`);
    writeFileSync(path, await objectBytes(moto.s3, BUCKET, key));
    expectSameDisk(path, qemuFormat, reference);
  });
});
