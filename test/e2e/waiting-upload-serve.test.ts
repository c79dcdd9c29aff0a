/**
 * In `imaging serve` (in-process bus, one manifest handler), an import whose manifest never
 * arrives must not delay another one (issue #11 item 3): waiting holds no worker. Driven through
 * the EC2 API with @aws-sdk/client-ec2; the second import completes with identical bytes while
 * the first keeps waiting for its upload.
 */
import { ImportVolumeCommand } from '@aws-sdk/client-ec2';
import type { RunningService } from '../../cli/serve';
import { makeRawDisk, tempDir } from '../helpers/disk-corpus';
import { sdkClient } from '../helpers/ec2-clients';
import { fileSha256, startTestService, upload, waitForTask, type Endpoints } from './import-driver';

jest.setTimeout(120_000);

let service: RunningService;
let endpoints: Endpoints;
let dir: string;

beforeAll(async () => {
  dir = tempDir('waiting-upload-serve-');
  ({ service, endpoints } = await startTestService(dir));
});

afterAll(async () => {
  await service?.stop();
});

test('an import that never uploads does not delay a second import', async () => {
  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
  const never = await ec2.send(new ImportVolumeCommand({
    Image: { Format: 'RAW', Bytes: 2 ** 20, ImportManifestUrl: new URL('/nowhere/never-uploaded.xml', endpoints.s3).href },
    Volume: { Size: 1 },
    AvailabilityZone: 'z',
  }));
  const waiting = never.ConversionTask!.ConversionTaskId!;
  // The manifest stage has taken the first import in and found nothing uploaded.
  await new Promise((r) => setTimeout(r, 1000));

  const disk = makeRawDisk(dir);
  const up = await upload(endpoints, disk.path, 'second-bucket');
  const second = await ec2.send(new ImportVolumeCommand({
    Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl },
    Volume: { Size: up.volumeSizeGiB },
    AvailabilityZone: 'z',
  }));
  const done = await waitForTask(endpoints, second.ConversionTask!.ConversionTaskId!, 60_000);
  expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
  expect(done.ImportVolume.Image.Checksum).toBe(fileSha256(disk.path));

  const still = await service.tasks.get(waiting);
  expect([still?.state, still?.statusMessage]).toEqual(['pending-upload', 'Pending import-image upload']);
  ec2.destroy();
});
