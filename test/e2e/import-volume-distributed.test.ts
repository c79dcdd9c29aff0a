/**
 * The same import path with every part in its own process: the gateway (`imaging gateway`) and
 * each stage (`functions/host/main.js`) connected through a real nats-server with JetStream, the
 * MongoDB-wire test server (or MONGODB_URI) and a real S3 server; driven by boto3 and
 * @aws-sdk/client-ec2, with byte comparison.
 */
import { ImportVolumeCommand, DescribeConversionTasksCommand } from '@aws-sdk/client-ec2';
import { makeRawDisk, tempDir } from '../helpers/disk-corpus';
import { boto3Call, sdkClient } from '../helpers/ec2-clients';
import { startCluster, type Cluster } from '../helpers/pipeline-cluster';
import { fileSha256, objectBytes, sha256, upload, waitForTask, type Endpoints } from './import-driver';

let cluster: Cluster;
let endpoints: Endpoints;
let creds: Endpoints['creds'];
let disk: { path: string; size: number };

beforeAll(async () => {
  cluster = await startCluster({ s3: 's3rver' });
  ({ endpoints } = cluster);
  ({ creds } = endpoints);
  disk = makeRawDisk(tempDir('e2e-dist-'));
});

afterAll(async () => {
  await cluster?.stop();
});

test('boto3 over the distributed pipeline: RAW import completes with identical bytes', async () => {
  const up = await upload(endpoints, disk.path, 'dist-bucket');
  const out = await boto3Call(endpoints.ec2, creds, 'ImportVolume', {
    Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB }, AvailabilityZone: 'z',
  });
  const taskId = out.ConversionTask.ConversionTaskId;
  const done = await waitForTask(endpoints, taskId);
  expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
  expect(done.ImportVolume.Image.Checksum).toBe(fileSha256(disk.path));
  const doc = await cluster.tasks.get(taskId);
  expect(doc!.history.map((h) => h.to)).toEqual(['pending-upload', 'manifest-received', 'bundle-decrypted', 'disk-converted', 'validated', 'boot-checked', 'completed']);
  const stored = await objectBytes(cluster.s3, doc!.artifacts.image!.bucket, doc!.artifacts.image!.key);
  expect(sha256(stored)).toBe(fileSha256(disk.path));
});

test('@aws-sdk/client-ec2 over the distributed pipeline, two imports at once', async () => {
  const ec2 = sdkClient(endpoints.ec2, creds);
  const ids = await Promise.all(['a/', 'b/'].map(async (prefix) => {
    const up = await upload(endpoints, disk.path, 'dist-bucket', { prefix });
    const created = await ec2.send(new ImportVolumeCommand({ Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: 1 }, AvailabilityZone: 'z' }));
    return created.ConversionTask!.ConversionTaskId!;
  }));
  for (const id of ids) expect(await waitForTask(endpoints, id)).toMatchObject({ State: 'completed', StatusMessage: '' });
  const described = await ec2.send(new DescribeConversionTasksCommand({ ConversionTaskIds: ids }));
  expect(described.ConversionTasks!.map((t) => t.State)).toEqual(['completed', 'completed']);
  for (const t of described.ConversionTasks!) expect(t.ImportVolume!.Image!.Checksum).toBe(fileSha256(disk.path));
});

test('a bad manifest fails its task with a message; the pipeline keeps serving', async () => {
  const { putWithUrl } = await import('./import-driver');
  const url = await putWithUrl(cluster.s3, 'dist-bucket', 'broken.xml', '<manifest><version>2010-11-15</version></manifest>');
  const out = await boto3Call(endpoints.ec2, creds, 'ImportVolume', { Image: { Format: 'RAW', Bytes: 10, ImportManifestUrl: url }, Volume: { Size: 1 }, AvailabilityZone: 'z' });
  const task = await waitForTask(endpoints, out.ConversionTask.ConversionTaskId);
  expect(task.State).toBe('cancelled');
  expect(task.StatusMessage).toMatch(/^ClientError: the import manifest has no <file-format>/);
});
