/**
 * Waiting for an upload holds no worker (issue #10 item 5), distributed: every stage its own
 * process on a real nats-server, with ONE manifest replica working on one delivery at a time, the
 * gateway process, jongodb and s3rver. First an uploaded import alone is timed to completion; then
 * ten imports whose manifests never arrive are started, then the same uploaded import: it
 * completes as if alone (within twice its time alone plus 5 s), and the ten still wait.
 */
import { ImportVolumeCommand } from '@aws-sdk/client-ec2';
import { makeRawDisk, tempDir } from '../helpers/disk-corpus';
import { sdkClient } from '../helpers/ec2-clients';
import { STAGES, startCluster, type Cluster } from '../helpers/pipeline-cluster';
import { fileSha256, upload, waitForTask } from './import-driver';

jest.setTimeout(240_000);

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({
    s3: 's3rver',
    env: { IMAGING_SWEEP_INTERVAL_MS: '200' },
    // Every stage, the manifest stage above all, works on one delivery at a time.
    stageEnv: Object.fromEntries(STAGES.map((stage) => [stage, { IMAGING_CONCURRENCY: '1' }])),
  });
});

afterAll(async () => {
  await cluster?.stop();
});

test('ten imports waiting for their upload do not delay an uploaded one on a single manifest replica', async () => {
  const { endpoints } = cluster;
  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
  const disk = makeRawDisk(tempDir('waiting-uploads-'));
  const importUploaded = async (prefix: string): Promise<number> => {
    const up = await upload(endpoints, disk.path, 'uploaded-bucket', { prefix });
    const started = Date.now();
    const out = await ec2.send(new ImportVolumeCommand({ Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB }, AvailabilityZone: 'z' }));
    const done = await waitForTask(endpoints, out.ConversionTask!.ConversionTaskId!, 120_000);
    expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
    expect(done.ImportVolume.Image.Checksum).toBe(fileSha256(disk.path));
    return Date.now() - started;
  };

  const alone = await importUploaded('alone/');

  const waiting: string[] = [];
  for (let i = 0; i < 10; i++) {
    const out = await ec2.send(new ImportVolumeCommand({
      Image: { Format: 'RAW', Bytes: 2 ** 20, ImportManifestUrl: new URL(`/nowhere/never-${i}.xml`, endpoints.s3).href },
      Volume: { Size: 1 },
      AvailabilityZone: 'z',
    }));
    waiting.push(out.ConversionTask!.ConversionTaskId!);
  }
  // The single manifest replica has taken the waiting imports in before the uploaded one comes.
  await new Promise((r) => setTimeout(r, 1500));
  const behindWaiting = await importUploaded('behind/');
  console.log(`uploaded import alone: ${alone} ms; behind ten waiting imports: ${behindWaiting} ms`);
  expect(behindWaiting).toBeLessThan(2 * alone + 5000);

  for (const id of waiting) expect((await cluster.tasks.get(id))?.state).toBe('pending-upload');
  ec2.destroy();
});
