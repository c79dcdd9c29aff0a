/**
 * RegisterImage of EC2 bundles through `imaging serve` with moto_server as its object storage
 * (multipart uploads can be listed there, so "nothing left behind" is checked, not assumed),
 * driven by boto3. Bundles are made by openssl + gzip + tar exactly as euca-bundle-image makes
 * them (test/helpers/euca-bundle.ts), encrypted for the service's own cloud certificate and
 * signed with a certificate registered for the account; the image comes out byte for byte. Each
 * way a bundle can be wrong is refused with its own StateReason, leaving nothing in the image
 * store. Kernel, ramdisk and a partition image associated with them.
 */
import { copyFileSync, readFileSync, writeFileSync } from 'fs';
import { basename, join } from 'path';
import { CreateBucketCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { RunningService } from '../../cli/serve';
import { createAccount } from '../../gateway/accounts';
import { addSigningCertificate } from '../../tasks/signing-certificates';
import type { ImageRecord } from '../../tasks/task';
import { makeRawDisk, seededBytes, tempDir } from '../helpers/disk-corpus';
import { boto3Call } from '../helpers/ec2-clients';
import { makeSystemDisk } from '../helpers/guest-images';
import { makeKeyPair, makeOpensslBundle, type KeyPair, type OpensslBundle, type OpensslBundleOptions } from '../helpers/euca-bundle';
import { describeWithMoto, startMotoServer, type RunningMotoServer } from '../helpers/moto-server';
import { objectBytes, sha256, startTestService, type Endpoints } from './import-driver';

const MiB = 1024 ** 2;
const BUCKET = 'bundle-bucket';

describeWithMoto('RegisterImage of EC2 bundles (serve on moto_server)', () => {
  let moto: RunningMotoServer;
  let service: RunningService;
  let endpoints: Endpoints;
  let dir: string;
  let cloud: KeyPair;
  let user: KeyPair;
  let other: KeyPair;
  let disk: { path: string; size: number };
  let fsImage: string;

  beforeAll(async () => {
    dir = tempDir('e2e-bundles-');
    // makeRawDisk leaves its bare ext4 filesystem next to its disk: the partition image.
    makeRawDisk(dir, 'plain.raw');
    fsImage = join(dir, 'root.ext4');
    copyFileSync(join(dir, 'part1.ext4'), fsImage);
    // A disk the validate stage accepts as a machine image (boot loader, OS).
    disk = makeSystemDisk(dir, { name: 'disk.raw' });
    moto = await startMotoServer();
    ({ service, endpoints } = await startTestService(dir, { s3Endpoint: moto.endpoint, s3AccessKeyId: 'MOTO', s3SecretAccessKey: 'MOTO' }));
    // The service's cloud certificate, as `imaging cloud-cert` prints it: what bundlers encrypt for.
    const cloudCert = join(dir, 'cloud-cert.pem');
    writeFileSync(cloudCert, service.cloudCertificate);
    cloud = { certPath: cloudCert, certPem: service.cloudCertificate, keyPath: '', keyPem: '' };
    user = makeKeyPair(dir, 'user');
    other = makeKeyPair(dir, 'other');
    await addSigningCertificate(service.tasks, service.credentials.accountId, user.certPem);
    await moto.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  }, 180_000);

  afterAll(async () => {
    await service?.stop();
    await moto?.stop();
  });

  /** Bundles `imagePath` with openssl/gzip/tar and uploads manifest and parts under bundles/. */
  async function bundleAndUpload(prefix: string, imagePath: string, extra: Partial<OpensslBundleOptions> = {}): Promise<OpensslBundle> {
    const made = makeOpensslBundle({ dir, imagePath, prefix, partSize: 4 * MiB, cloud, user, ...extra });
    for (const path of [made.manifestPath, ...made.partPaths]) {
      await moto.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `bundles/${basename(path)}`, Body: readFileSync(path) }));
    }
    return made;
  }

  async function register(prefix: string, params: Record<string, unknown> = {}): Promise<string> {
    const out = await boto3Call(endpoints.ec2, endpoints.creds, 'RegisterImage', { ImageLocation: `${BUCKET}/bundles/${prefix}.manifest.xml`, Name: prefix, ...params });
    return out.ImageId;
  }

  /** DescribeImages through boto3 until the image is no longer pending. */
  async function waitForImage(imageId: string): Promise<any> {
    const deadline = Date.now() + 300_000;
    for (;;) {
      const image = (await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImages', { ImageIds: [imageId] })).Images[0];
      if (image.State !== 'pending') return image;
      if (Date.now() > deadline) throw new Error(`${imageId} still pending`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async function storedImage(imageId: string): Promise<{ record: ImageRecord; bytes: Buffer }> {
    const record = (await service.tasks.getResource(imageId)) as ImageRecord;
    return { record, bytes: await objectBytes(service.s3, record.image!.bucket, record.image!.key) };
  }

  /** Objects and unfinished multipart uploads the image's task left in the image store. */
  async function leftovers(imageId: string): Promise<string[]> {
    const record = (await service.tasks.getResource(imageId)) as ImageRecord;
    const prefix = `images/${record.taskId}/`;
    const objects = await moto.s3.send(new ListObjectsV2Command({ Bucket: 'imaging-images', Prefix: prefix }));
    const uploads = await moto.s3.send(new ListMultipartUploadsCommand({ Bucket: 'imaging-images', Prefix: prefix }));
    return [...(objects.Contents ?? []).map((o) => `object ${o.Key}`), ...(uploads.Uploads ?? []).map((u) => `upload ${u.Key}`)];
  }

  test('a disk bundled by openssl + gzip + tar registers pending, then available, byte for byte', async () => {
    const made = await bundleAndUpload('disk', disk.path, { partSize: 256 * 1024 });
    expect(made.partPaths.length).toBeGreaterThan(1);
    const imageId = await register('disk', { Architecture: 'x86_64', Description: 'a whole disk', RootDeviceName: '/dev/sda1', VirtualizationType: 'hvm' });
    expect(imageId).toMatch(/^emi-[0-9a-f]{17}$/);
    const first = (await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImages', { ImageIds: [imageId] })).Images[0];
    expect(['pending', 'available']).toContain(first.State);
    const done = await waitForImage(imageId);
    expect(done).toMatchObject({
      ImageId: imageId, State: 'available', ImageType: 'machine', RootDeviceType: 'instance-store', RootDeviceName: '/dev/sda1',
      ImageLocation: `${BUCKET}/bundles/disk.manifest.xml`, Architecture: 'x86_64', VirtualizationType: 'hvm', Description: 'a whole disk', Name: 'disk',
    });
    const { record, bytes } = await storedImage(imageId);
    expect([bytes.length, sha256(bytes)]).toEqual([disk.size, sha256(readFileSync(disk.path))]);
    expect(record.image!.sha256).toBe(sha256(bytes));
    expect(record.layout).toBe('disk');
    const task = await service.tasks.get(record.taskId);
    expect([task!.state, task!.artifacts.bundle!.signedBy]).toEqual(['completed', expect.stringMatching(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/)]);
  }, 400_000);

  test('a ciphertext that fills its parts exactly, with its empty last part, registers byte for byte', async () => {
    const image = join(dir, 'odd.img');
    writeFileSync(image, Buffer.concat([seededBytes(3 * MiB + 17, 21), Buffer.alloc(MiB)]));
    // A kernel: its bytes are not judged as a disk to boot, so random bytes will do.
    const made = await bundleAndUpload('exact', image, { partSizeFor: (n) => n / 2, imageType: 'kernel' });
    expect(made.ciphertextBytes % made.partSize).toBe(0);
    expect(readFileSync(made.partPaths[made.partPaths.length - 1]).length).toBe(0);
    const imageId = await register('exact');
    expect((await waitForImage(imageId)).State).toBe('available');
    expect(sha256((await storedImage(imageId)).bytes)).toBe(sha256(readFileSync(image)));
  }, 300_000);

  test('kernel and ramdisk first, then a partition image associated with them; a machine image as kernel is refused', async () => {
    const kernel = join(dir, 'vmlinuz');
    writeFileSync(kernel, seededBytes(MiB + 4321, 31));
    const ramdisk = join(dir, 'initrd.img');
    writeFileSync(ramdisk, seededBytes(700_001, 32));
    await bundleAndUpload('kernel', kernel, { imageType: 'kernel' });
    await bundleAndUpload('ramdisk', ramdisk, { imageType: 'ramdisk' });
    const kernelId = await register('kernel');
    const ramdiskId = await register('ramdisk');
    expect(kernelId).toMatch(/^eki-[0-9a-f]{17}$/);
    expect(ramdiskId).toMatch(/^eri-[0-9a-f]{17}$/);
    expect(await waitForImage(kernelId)).toMatchObject({ State: 'available', ImageType: 'kernel' });
    expect(await waitForImage(ramdiskId)).toMatchObject({ State: 'available', ImageType: 'ramdisk' });

    await bundleAndUpload('rootfs', fsImage);
    const imageId = await register('rootfs', { KernelId: kernelId, RamdiskId: ramdiskId, VirtualizationType: 'paravirtual' });
    const done = await waitForImage(imageId);
    expect(done).toMatchObject({ State: 'available', ImageType: 'machine', KernelId: kernelId, RamdiskId: ramdiskId, VirtualizationType: 'paravirtual' });
    const { record, bytes } = await storedImage(imageId);
    expect(record.layout).toBe('partition');
    expect(sha256(bytes)).toBe(sha256(readFileSync(fsImage)));
    // The task carries what the validate stage needs to accept a bare filesystem.
    const task = await service.tasks.get(record.taskId);
    expect([task!.request.bundle!.kernelId, task!.request.bundle!.ramdiskId, task!.artifacts.layout]).toEqual([kernelId, ramdiskId, 'partition']);
    expect([task!.request.kernelId, task!.request.ramdiskId]).toEqual([kernelId, ramdiskId]);
    expect((await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeImages', { Filters: [{ Name: 'kernel-id', Values: [kernelId] }] })).Images.map((i: any) => i.ImageId)).toEqual([imageId]);

    // A machine image named as kernel, a kernel named as ramdisk: refused at the call, nothing recorded.
    await expect(register('rootfs', { Name: 'rootfs-2', KernelId: imageId })).rejects.toMatchObject({ code: 'InvalidParameterValue', message: expect.stringContaining(`KernelId ${imageId} is a machine image, not a kernel image`) });
    await expect(register('rootfs', { Name: 'rootfs-3', KernelId: kernelId, RamdiskId: kernelId })).rejects.toMatchObject({ code: 'InvalidParameterValue', message: expect.stringContaining('is a kernel image, not a ramdisk image') });
    // Another account's kernel does not exist for this one.
    const stranger = await createAccount(service.tasks, 'stranger');
    await expect(boto3Call(endpoints.ec2, { accessKeyId: stranger.accessKeyId, secretAccessKey: stranger.secretAccessKey }, 'DescribeImages', { ImageIds: [kernelId] })).rejects.toMatchObject({ code: 'InvalidAMIID.NotFound' });
  }, 600_000);

  describe('refusals: each with its own StateReason, nothing left in the image store', () => {
    async function refused(prefix: string, expected: RegExp): Promise<void> {
      const imageId = await register(prefix);
      const done = await waitForImage(imageId);
      expect(done.State).toBe('failed');
      expect(done.StateReason.Message).toMatch(expected);
      expect(await leftovers(imageId)).toEqual([]);
    }

    test('a tampered part', async () => {
      const made = await bundleAndUpload('tampered', disk.path, { partSize: 256 * 1024 });
      // The last part with bytes: every earlier part has already gone into the image store's upload.
      const last = made.partPaths.filter((p) => readFileSync(p).length > 0).pop()!;
      const bytes = readFileSync(last);
      bytes[bytes.length >> 1] ^= 0x40;
      await moto.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `bundles/${basename(last)}`, Body: bytes }));
      await refused('tampered', /^ClientError: part \d+ \(bundles\/tampered\.part\.\d+\) has SHA-1 [0-9a-f]{40} but the manifest says [0-9a-f]{40}: the part is damaged or was changed$/);
    }, 300_000);

    test('a bundle encrypted for another cloud', async () => {
      await bundleAndUpload('othercloud', fsImage, { cloud: other });
      await refused('othercloud', /^ClientError: the bundle key or IV cannot be decrypted with this cloud's key/);
    }, 300_000);

    test('an edited <image> element', async () => {
      const made = await bundleAndUpload('edited', fsImage);
      const edited = made.manifestXml.replace('<name>root.ext4</name>', '<name>evil.ext4</name>');
      expect(edited).not.toBe(made.manifestXml);
      await moto.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'bundles/edited.manifest.xml', Body: edited }));
      await refused('edited', /^ClientError: the bundle manifest signature does not verify against any signing certificate of your account/);
    }, 300_000);

    test('a certificate of another account', async () => {
      const owner = await createAccount(service.tasks, 'other-owner');
      await addSigningCertificate(service.tasks, owner.accountId, other.certPem);
      await bundleAndUpload('foreign', fsImage, { signWith: other });
      await refused('foreign', /^ClientError: the bundle manifest is signed with a certificate registered for another account, not yours/);
    }, 300_000);

    test('an UNSIGNED manifest', async () => {
      await bundleAndUpload('unsigned', fsImage, { signWith: 'UNSIGNED' });
      await refused('unsigned', /^ClientError: the bundle manifest is UNSIGNED/);
    }, 300_000);
  });

  test('RegisterImage refusals at the call: a missing manifest, no ImageLocation, a duplicate name', async () => {
    await expect(boto3Call(endpoints.ec2, endpoints.creds, 'RegisterImage', { ImageLocation: `${BUCKET}/bundles/none.manifest.xml`, Name: 'none' })).rejects.toMatchObject({ code: 'InvalidManifest' });
    await expect(boto3Call(endpoints.ec2, endpoints.creds, 'RegisterImage', { Name: 'no-location' })).rejects.toMatchObject({ code: 'UnsupportedOperation' });
    await expect(register('disk')).rejects.toMatchObject({ code: 'InvalidAMIName.Duplicate' });
  }, 120_000);
});
