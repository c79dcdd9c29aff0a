/**
 * Issue 11 item 1: one legal-looking ImportVolume whose manifest lists 23,500 one-byte parts
 * made the convert stage request every part at once and took `imaging serve` down (EMFILE,
 * 1.14 GB RSS). Now the manifest is refused with a ClientError, the process keeps a fixed
 * number of file descriptors, and an import started at the same time completes.
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { ImportVolumeCommand } from '@aws-sdk/client-ec2';
import { readdirSync, statSync, writeFileSync } from 'fs';
import { join } from 'path';
import type { RunningService } from '../../cli/serve';
import { MAX_MANIFEST_BYTES } from '../../toolkit/bundle/import-manifest';
import { seededBytes, tempDir } from '../helpers/disk-corpus';
import { sdkClient } from '../helpers/ec2-clients';
import { clientFor, fileSha256, putWithUrl, startTestService, upload, waitForTask, type Endpoints } from './import-driver';

const PARTS = 23_500;
/** Descriptors this process may hold at any moment of the test: what it held before, plus room for one normal import. */
const FD_ALLOWANCE = 200;

let service: RunningService;
let endpoints: Endpoints;
let dir: string;

beforeAll(async () => {
  dir = tempDir('e2e-tiny-parts-');
  ({ service, endpoints } = await startTestService(dir));
});

afterAll(async () => {
  await service?.stop();
});

function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

test(`a manifest of ${PARTS} one-byte parts fails with a ClientError; descriptors stay bounded and a normal import completes`, async () => {
  const ctx = await clientFor(endpoints);
  await ctx.s3.send(new CreateBucketCommand({ Bucket: 'tiny-bucket' }));
  // The parts' URLs point at the service's own S3 endpoint, as a real upload's would; the
  // service must refuse the manifest before it fetches any of them, so no part object is put.
  // Written compactly, as an attacker would, to fit the manifest size limit.
  const base = `${endpoints.s3}/tp/`;
  const parts = Array.from({ length: PARTS }, (_, i) =>
    `<part index="${i}"><byte-range start="${i}" end="${i}"/><key>k</key><head-url>${base}${i}</head-url><get-url>${base}${i}</get-url></part>`).join('');
  const manifest = `<?xml version="1.0"?><manifest><version>2010-11-15</version><file-format>RAW</file-format>` +
    `<importer><name>t</name><version>1</version><release>1</release></importer>` +
    `<import><size>${PARTS}</size><volume-size>1</volume-size><parts count="${PARTS}">${parts}</parts></import></manifest>`;
  expect(Buffer.byteLength(manifest)).toBeLessThanOrEqual(MAX_MANIFEST_BYTES); // within every other limit
  const manifestUrl = await putWithUrl(ctx.s3, 'tiny-bucket', 'tiny.manifest.xml', manifest);

  const small = join(dir, 'normal.raw');
  writeFileSync(small, seededBytes(3 * 2 ** 20 + 17, 23));
  const normal = await upload(endpoints, small, 'normal-bucket', { partSizeMiB: 1 });

  const baseline = openDescriptors();
  let most = baseline;
  const sampler = setInterval(() => (most = Math.max(most, openDescriptors())), 20);
  try {
    const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
    const [tiny, good] = await Promise.all([
      ec2.send(new ImportVolumeCommand({ Image: { Format: 'RAW', Bytes: PARTS, ImportManifestUrl: manifestUrl }, Volume: { Size: 1 }, AvailabilityZone: 'z' })),
      ec2.send(new ImportVolumeCommand({ Image: { Format: 'RAW', Bytes: statSync(small).size, ImportManifestUrl: normal.manifestUrl }, Volume: { Size: 1 }, AvailabilityZone: 'z' })),
    ]);
    const [tinyTask, goodTask] = await Promise.all([
      waitForTask(endpoints, tiny.ConversionTask!.ConversionTaskId!),
      waitForTask(endpoints, good.ConversionTask!.ConversionTaskId!),
    ]);
    expect(tinyTask.State).not.toBe('completed');
    expect(tinyTask.StatusMessage).toBe(
      'ClientError: part 0 of the import manifest is 1 bytes; every part but the last must be at least 1048576 bytes (1 MiB): upload the image in larger parts (10 MiB is usual)',
    );
    expect([goodTask.State, goodTask.StatusMessage]).toEqual(['completed', '']);
    expect(goodTask.ImportVolume.Image.Checksum).toBe(fileSha256(small));
  } finally {
    clearInterval(sampler);
  }
  expect(most - baseline).toBeLessThan(FD_ALLOWANCE);
});
