/**
 * From instance store to EBS, and kernels for imported partition images, through `imaging serve`
 * (embedded S3): a partition image bundled by openssl + gzip + tar and registered with a kernel
 * and a ramdisk is copied by boto3's CopyImage into an ami- whose root device is EBS; its new
 * snapshot holds the bundle image's bytes (shared by reference), which outlive the source's
 * DeregisterImage and go with the copy's. CopyImage's refusals, with @aws-sdk/client-ec2 beside
 * boto3. Then ImportImage of the same bare filesystem with the extension parameters KernelId,
 * RamdiskId and Layout (sent by `imaging import-image`): DescribeImages shows the association,
 * `imaging describe-images --json` the layout; a machine image as KernelId is refused. And
 * ImportInstance of that bare filesystem with the same parameters (sent by `imaging
 * import-instance`): the stopped instance's record keeps the kernel, ramdisk, virtualization and
 * layout, and DescribeConversionTasks shows them (`imaging describe-conversion-tasks --json`).
 */
import { execFileSync } from 'child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'fs';
import { basename, join } from 'path';
import { CreateBucketCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { CopyImageCommand, DescribeImagesCommand } from '@aws-sdk/client-ec2';
import type { RunningService } from '../../cli/serve';
import { createAccount } from '../../gateway/accounts';
import { addSigningCertificate } from '../../tasks/signing-certificates';
import type { ImageRecord, SnapshotRecord } from '../../tasks/task';
import { seededBytes, tempDir } from '../helpers/disk-corpus';
import { boto3Call, boto3Wait, sdkClient } from '../helpers/ec2-clients';
import { makeKeyPair, makeOpensslBundle, type KeyPair } from '../helpers/euca-bundle';
import { clientFor, objectBytes, runCli, sha256, startTestService, type Endpoints } from './import-driver';

const MiB = 1024 ** 2;
const BUCKET = 'copy-bundles';

let service: RunningService;
let endpoints: Endpoints;
let dir: string;
let cloud: KeyPair;
let user: KeyPair;
let fsImage: string;
let kernelId: string;
let ramdiskId: string;

const call = (operation: string, params: Record<string, unknown> = {}) => boto3Call(endpoints.ec2, endpoints.creds, operation, params);
const describe = async (imageId: string) => (await call('DescribeImages', { ImageIds: [imageId] })).Images[0];

/** DescribeImages through @aws-sdk/client-ec2 (in-process: no python start per look) until the image is no longer pending. */
async function waitForImage(imageId: string): Promise<any> {
  const deadline = Date.now() + 120_000;
  const sdk = sdkClient(endpoints.ec2, endpoints.creds);
  for (;;) {
    const image = (await sdk.send(new DescribeImagesCommand({ ImageIds: [imageId] }))).Images![0];
    if (image.State !== 'pending') return image;
    if (Date.now() > deadline) throw new Error(`${imageId} still pending`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Bundles `imagePath` with openssl/gzip/tar, uploads it with the account's own key, registers it and waits. */
async function registerBundle(prefix: string, imagePath: string, imageType: 'machine' | 'kernel' | 'ramdisk', params: Record<string, unknown> = {}): Promise<string> {
  const made = makeOpensslBundle({ dir, imagePath, prefix, partSize: 4 * MiB, cloud, user, imageType });
  const { s3 } = await clientFor(endpoints);
  for (const path of [...made.partPaths, made.manifestPath]) {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: basename(path), Body: readFileSync(path) }));
  }
  const imageId = (await call('RegisterImage', { ImageLocation: `${BUCKET}/${prefix}.manifest.xml`, Name: prefix, ...params })).ImageId;
  const image = await waitForImage(imageId);
  expect([image.State, image.StateReason]).toEqual(['available', undefined]);
  return imageId;
}

async function exists(bucket: string, key: string): Promise<boolean> {
  try {
    await service.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
    throw err;
  }
}

beforeAll(async () => {
  dir = tempDir('e2e-copy-image-');
  // The partition image: a small bare ext4 filesystem holding a Linux root (os-release, some data).
  const content = join(dir, 'rootfs');
  mkdirSync(join(content, 'etc'), { recursive: true });
  writeFileSync(join(content, 'etc', 'os-release'), 'NAME="Test Linux"\nID=testlinux\nVERSION_ID="1.0"\n');
  writeFileSync(join(content, 'random.bin'), seededBytes(MiB + 777, 7));
  fsImage = join(dir, 'root.ext4');
  execFileSync('truncate', ['-s', String(8 * MiB), fsImage]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', content, fsImage], { stdio: 'pipe' });
  ({ service, endpoints } = await startTestService(dir));
  const cloudCert = join(dir, 'cloud-cert.pem');
  writeFileSync(cloudCert, service.cloudCertificate);
  cloud = { certPath: cloudCert, certPem: service.cloudCertificate, keyPath: '', keyPem: '' };
  user = makeKeyPair(dir, 'user');
  await addSigningCertificate(service.tasks, service.credentials.accountId, user.certPem);
  await (await clientFor(endpoints)).s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  const kernel = join(dir, 'vmlinuz');
  writeFileSync(kernel, seededBytes(MiB + 4321, 31));
  const ramdisk = join(dir, 'initrd.img');
  writeFileSync(ramdisk, seededBytes(700_001, 32));
  [kernelId, ramdiskId] = await Promise.all([registerBundle('kernel', kernel, 'kernel'), registerBundle('ramdisk', ramdisk, 'ramdisk')]);
}, 180_000);

afterAll(async () => {
  await service?.stop();
});

test('CopyImage of a bundle image: an EBS-backed ami- whose new snapshot holds the same bytes, which outlive the source', async () => {
  const sourceId = await registerBundle('rootfs', fsImage, 'machine', { KernelId: kernelId, RamdiskId: ramdiskId });
  const source = (await service.tasks.getResource(sourceId)) as ImageRecord;
  expect(source.layout).toBe('partition');

  const copyParams = {
    SourceImageId: sourceId, SourceRegion: 'us-east-1', Name: 'rootfs-ebs', Description: 'rootfs on EBS', ClientToken: 'copy-rootfs-1',
    TagSpecifications: [{ ResourceType: 'image', Tags: [{ Key: 'team', Value: 'ops' }] }],
  };
  const imageId = (await call('CopyImage', copyParams)).ImageId;
  expect(imageId).toMatch(/^ami-[0-9a-f]{17}$/);
  await boto3Wait(endpoints.ec2, endpoints.creds, 'image_available', { ImageIds: [imageId] }, { delaySeconds: 1, maxAttempts: 30 });
  const copy = await describe(imageId);
  expect(copy).toMatchObject({
    ImageId: imageId, State: 'available', ImageType: 'machine', RootDeviceType: 'ebs', RootDeviceName: '/dev/sda1', Name: 'rootfs-ebs', Description: 'rootfs on EBS',
    KernelId: kernelId, RamdiskId: ramdiskId, Architecture: 'x86_64', VirtualizationType: 'paravirtual', Tags: [{ Key: 'team', Value: 'ops' }],
  });
  const snapshotId = copy.BlockDeviceMappings[0].Ebs.SnapshotId;
  expect(copy.BlockDeviceMappings).toEqual([{ DeviceName: '/dev/sda1', Ebs: expect.objectContaining({ SnapshotId: expect.stringMatching(/^snap-[0-9a-f]{17}$/), VolumeSize: 1 }) }]);
  const [snapshot] = (await call('DescribeSnapshots', { SnapshotIds: [snapshotId] })).Snapshots;
  expect(snapshot).toMatchObject({ SnapshotId: snapshotId, State: 'completed', VolumeSize: 1, Description: `Copied for DestinationAmi ${imageId} from SourceAmi ${sourceId}` });

  // The snapshot's bytes are the bundle image's, byte for byte.
  const record = (await service.tasks.getResource(snapshotId)) as SnapshotRecord;
  const original = sha256(readFileSync(fsImage));
  expect(sha256(await objectBytes(service.s3, record.image.bucket, record.image.key))).toBe(original);
  expect(record.image).toEqual(source.image);

  // The same ClientToken answers the same image; with other parameters it is a mismatch.
  expect((await call('CopyImage', copyParams)).ImageId).toBe(imageId);
  await expect(call('CopyImage', { ...copyParams, Name: 'rootfs-other' })).rejects.toMatchObject({ code: 'IdempotentParameterMismatch' });

  // Deregistering the source leaves the copy whole; the bytes go with the last record naming them.
  await call('DeregisterImage', { ImageId: sourceId });
  await expect(describe(sourceId)).rejects.toMatchObject({ code: 'InvalidAMIID.NotFound' });
  expect(await describe(imageId)).toMatchObject({ State: 'available' });
  expect(sha256(await objectBytes(service.s3, record.image.bucket, record.image.key))).toBe(original);
  await expect(call('DeleteSnapshot', { SnapshotId: snapshotId })).rejects.toMatchObject({ code: 'InvalidSnapshot.InUse' });
  const gone = await call('DeregisterImage', { ImageId: imageId, DeleteAssociatedSnapshots: true });
  expect(gone.DeleteSnapshotResults).toEqual([{ SnapshotId: snapshotId, ReturnCode: 'success' }]);
  expect(await exists(record.image.bucket, record.image.key)).toBe(false);
}, 240_000);

test('CopyImage refusals: a kernel, an encrypted copy, another region, another account\'s image, a name taken', async () => {
  const base = { SourceRegion: 'us-east-1', Name: 'refused-copy' };
  await expect(call('CopyImage', { ...base, SourceImageId: kernelId })).rejects.toMatchObject({
    code: 'InvalidParameterValue', message: expect.stringContaining(`SourceImageId ${kernelId} is a kernel image; only machine images can be copied`),
  });
  const machineId = await registerBundle('rootfs2', fsImage, 'machine', { KernelId: kernelId });
  const sdk = sdkClient(endpoints.ec2, endpoints.creds);
  await expect(sdk.send(new CopyImageCommand({ ...base, SourceImageId: machineId, Encrypted: true }))).rejects.toMatchObject({
    name: 'InvalidParameterValue', message: expect.stringContaining('Encrypted copies are not supported'),
  });
  await expect(sdk.send(new CopyImageCommand({ ...base, SourceImageId: machineId, SourceRegion: 'eu-west-1' }))).rejects.toMatchObject({ name: 'InvalidParameterValue' });
  // The SDK's own answer: another account's image does not exist for this one.
  const stranger = await createAccount(service.tasks, 'copy-stranger');
  const strangerSdk = sdkClient(endpoints.ec2, { accessKeyId: stranger.accessKeyId, secretAccessKey: stranger.secretAccessKey });
  await expect(strangerSdk.send(new CopyImageCommand({ ...base, SourceImageId: machineId }))).rejects.toMatchObject({ name: 'InvalidAMIID.NotFound' });
  await expect(call('CopyImage', { ...base, SourceImageId: 'emi-0123456789abcdef0' })).rejects.toMatchObject({ code: 'InvalidAMIID.NotFound' });
  // A name already taken by an image of the account.
  await expect(call('CopyImage', { ...base, SourceImageId: machineId, Name: 'rootfs2' })).rejects.toMatchObject({ code: 'InvalidAMIName.Duplicate' });
  // The refusals made nothing.
  const images = (await call('DescribeImages', { Owners: ['self'] })).Images.map((i: any) => i.ImageId);
  expect(images.filter((id: string) => id.startsWith('ami-'))).toEqual([]);
}, 180_000);

test('ImportImage of a partition image with KernelId, RamdiskId and Layout (extension parameters): the image keeps them; a machine image as kernel is refused', async () => {
  const { s3 } = await clientFor(endpoints);
  await s3.send(new CreateBucketCommand({ Bucket: 'partition-imports' }));
  await s3.send(new PutObjectCommand({ Bucket: 'partition-imports', Key: 'root.ext4', Body: readFileSync(fsImage) }));
  const source = 's3://partition-imports/root.ext4';
  const { stdout } = await runCli(endpoints, ['import-image', source, '--format', 'raw', '--kernel-id', kernelId, '--ramdisk-id', ramdiskId, '--layout', 'partition', '--wait', '--json', '--no-progress']);
  const done = JSON.parse(stdout);
  expect(done.status).toBe('completed');
  const image = await describe(done.imageId);
  expect(image).toMatchObject({ ImageId: done.imageId, State: 'available', RootDeviceType: 'ebs', KernelId: kernelId, RamdiskId: ramdiskId, VirtualizationType: 'paravirtual' });
  const [shown] = JSON.parse((await runCli(endpoints, ['describe-images', done.imageId, '--json'])).stdout);
  expect(shown).toMatchObject({ imageId: done.imageId, kernelId, ramdiskId, virtualizationType: 'paravirtual', layout: 'partition', rootDeviceType: 'ebs' });
  const task = await service.tasks.get(done.importTaskId);
  expect([task!.request.kernelId, task!.request.ramdiskId, task!.request.layout, task!.artifacts.layout]).toEqual([kernelId, ramdiskId, 'partition', 'partition']);

  // A machine image named as kernel: refused at the call with its error code, no task made.
  const tasksBefore = (await service.tasks.list({ accountId: service.credentials.accountId })).length;
  await expect(runCli(endpoints, ['import-image', source, '--format', 'raw', '--kernel-id', done.imageId])).rejects.toMatchObject({
    stderr: expect.stringMatching(/InvalidParameterValue.*KernelId ami-[0-9a-f]{17} is a machine image, not a kernel image/s),
  });
  await expect(runCli(endpoints, ['import-image', source, '--format', 'raw', '--kernel-id', kernelId, '--ramdisk-id', kernelId])).rejects.toMatchObject({
    stderr: expect.stringContaining('is a kernel image, not a ramdisk image'),
  });
  expect((await service.tasks.list({ accountId: service.credentials.accountId })).length).toBe(tasksBefore);

  // A declared layout the disk does not have fails the task with a message saying so.
  const wrong = JSON.parse((await runCli(endpoints, ['import-image', source, '--format', 'raw', '--kernel-id', kernelId, '--layout', 'disk', '--wait', '--json', '--no-progress']).catch((err) => err)).stdout);
  expect(wrong.statusMessage).toMatch(/^ClientError: the request declared Layout=disk but the image has no partition table/);
}, 240_000);

test('ImportInstance of a partition image with KernelId, RamdiskId and Layout (extension parameters): the instance keeps them, and the conversion task shows them', async () => {
  const { stdout } = await runCli(endpoints, [
    'import-instance', fsImage, '--format', 'raw', '--bucket', 'partition-instances', '--architecture', 'x86_64',
    '--kernel-id', kernelId, '--ramdisk-id', ramdiskId, '--layout', 'partition', '--wait', '--json', '--no-progress',
  ]);
  const done = JSON.parse(stdout);
  expect([done.state, done.statusMessage]).toEqual(['completed', '']);
  const boots = { kernelId, ramdiskId, virtualizationType: 'paravirtual', layout: 'partition' };
  expect(done).toMatchObject({ ...boots, instanceId: expect.stringMatching(/^i-[0-9a-f]{17}$/), format: 'RAW', imageSha256: sha256(readFileSync(fsImage)) });

  // The stopped instance's record: the association is the instance's, not only the request's.
  const instance = await service.tasks.getResource(done.instanceId);
  expect(instance).toMatchObject({ kind: 'instance', state: 'stopped', taskId: done.conversionTaskId, ...boots });

  // DescribeConversionTasks shows it (extension elements of importInstance), as JSON and as text.
  const [described] = JSON.parse((await runCli(endpoints, ['describe-conversion-tasks', done.conversionTaskId, '--json'])).stdout);
  expect(described).toMatchObject({ conversionTaskId: done.conversionTaskId, state: 'completed', instanceId: done.instanceId, ...boots });
  const text = (await runCli(endpoints, ['describe-conversion-tasks', done.conversionTaskId])).stdout;
  expect(text).toContain(`kernel          ${kernelId}  ramdisk ${ramdiskId}`);
  expect(text).toContain('boots           paravirtual, partition layout');
}, 120_000);
