/**
 * The import path against an S3 server we did not write: `imaging serve` in-process with
 * IMAGING_S3_ENDPOINT (settings.s3Endpoint) pointing at moto_server, which, like every real S3,
 * implements UploadPartCopy. So the convert stage's zero parts go by copy from a zero object
 * (s3rver, the embedded default, answers NotImplemented and the sink falls back to bytes), and
 * the whole stored object is hashed against `qemu-img convert -O raw` of the same input: a zero
 * object holding anything but zeros fails here.
 */
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import { createReadStream, statSync } from 'fs';
import { join } from 'path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { RunningService } from '../../cli/serve';
import { makeRawDisk, qemuImg, tempDir } from '../helpers/disk-corpus';
import { boto3Call } from '../helpers/ec2-clients';
import { describeWithMoto, startMotoServer, type RunningMotoServer } from '../helpers/moto-server';
import { startTestService, upload, waitForTask, type Endpoints } from './import-driver';

const MiB = 1024 ** 2;

/** SHA-256 of a file, streamed. */
function fileSha256(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** SHA-256 and length of a whole object, streamed. */
async function objectSha256(s3: S3Client, bucket: string, key: string): Promise<{ sha256: string; size: number }> {
  const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of response.Body as AsyncIterable<Uint8Array>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest('hex'), size };
}

describeWithMoto('ImportVolume into moto_server (zero parts by UploadPartCopy)', () => {
  let moto: RunningMotoServer;
  let service: RunningService;
  let endpoints: Endpoints;
  let dir: string;
  let disk: { path: string; size: number };
  /** Commands the service's own S3 client (the stages') completed, by name. */
  const completed: string[] = [];

  beforeAll(async () => {
    dir = tempDir('e2e-moto-');
    // 96 MiB: MBR + ext4 (1..33 MiB, mostly zeros), random bytes at 36..39 MiB, then ~57 MiB of
    // zeros before a random tail: several whole zero parts at the stage's 8 MiB part size. A
    // whole number of sectors, as qemu-img rounds a raw disk up to one (a RAW import does not).
    disk = makeRawDisk(dir, 'zeros.raw', 96 * MiB + 24 * 512);
    moto = await startMotoServer();
    ({ service, endpoints } = await startTestService(dir, { s3Endpoint: moto.endpoint, s3AccessKeyId: 'MOTO', s3SecretAccessKey: 'MOTO' }));
    service.s3.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        completed.push(String(context.commandName).replace(/Command$/, ''));
        return result;
      },
      { step: 'initialize', name: 'e2eRecordCompleted' },
    );
  }, 120_000);

  afterAll(async () => {
    await service?.stop();
    await moto?.stop();
  });

  describe.each([
    ['RAW', 'raw', []],
    ['VMDK', 'vmdk', ['-o', 'subformat=streamOptimized']],
  ] as const)('a %s image with long zero runs', (format, qemuFormat, qemuOptions) => {
    test('is stored byte for byte as qemu-img convert -O raw makes it, its zero parts copied server-side', async () => {
      const image = format === 'RAW' ? disk.path : join(dir, `zeros.${qemuFormat}`);
      if (format !== 'RAW') qemuImg('convert', '-f', 'raw', '-O', qemuFormat, ...qemuOptions, disk.path, image);
      const reference = join(dir, `reference-${qemuFormat}.raw`);
      execFileSync('qemu-img', ['convert', '-f', qemuFormat, '-O', 'raw', image, reference]);
      const want = await fileSha256(reference);

      const copiesBefore = completed.filter((command) => command === 'UploadPartCopy').length;
      const up = await upload(endpoints, image, `moto-${qemuFormat}-bucket`, { format });
      const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportVolume', {
        Image: { Format: format, Bytes: up.size, ImportManifestUrl: up.manifestUrl },
        Volume: { Size: up.volumeSizeGiB },
        AvailabilityZone: 'local-1a',
      });
      const taskId = out.ConversionTask.ConversionTaskId;
      const done = await waitForTask(endpoints, taskId, 180_000);
      expect([done.State, done.StatusMessage]).toEqual(['completed', '']);

      // The zero parts really went by copy: without this the byte check below proves nothing about it.
      const copies = completed.filter((command) => command === 'UploadPartCopy').length - copiesBefore;
      expect(copies).toBeGreaterThanOrEqual(4);

      const doc = await service.tasks.get(taskId);
      const stored = doc!.artifacts.image!;
      // The whole object as S3 assembled it, against qemu-img's conversion of the same input.
      expect(await objectSha256(moto.s3, stored.bucket, stored.key)).toEqual({ sha256: want, size: statSync(reference).size });
      expect(stored.sha256).toBe(want);
      expect(doc!.artifacts.validation?.partitionTable).toBe('mbr');
      // The zero object went with the upload.
      const listed = await moto.s3.send(new ListObjectsV2Command({ Bucket: stored.bucket, Prefix: stored.key.slice(0, stored.key.lastIndexOf('/') + 1) }));
      expect(listed.Contents?.map((object) => object.Key)).toEqual([stored.key]);
    }, 240_000);
  });
});
