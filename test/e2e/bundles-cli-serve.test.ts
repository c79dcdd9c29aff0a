/**
 * The bundle tools against `imaging serve` (embedded S3): `imaging cloud-cert`, `imaging cert
 * add|list|delete`, `imaging bundle-image`, `imaging upload-bundle`, `imaging register-image
 * --wait`, `imaging describe-images --json` and `imaging unbundle`, with @aws-sdk/client-ec2
 * beside them; and a sparse image over 8 GiB bundled by GNU tar (a base-256 size field) that
 * registers and is stored byte for byte.
 */
import { execFileSync } from 'child_process';
import { createHash, createPrivateKey, X509Certificate } from 'crypto';
import { closeSync, createReadStream, openSync, readFileSync, readdirSync, writeFileSync, writeSync } from 'fs';
import { basename, join } from 'path';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { DescribeImagesCommand, RegisterImageCommand } from '@aws-sdk/client-ec2';
import type { RunningService } from '../../cli/serve';
import { addSigningCertificate } from '../../tasks/signing-certificates';
import type { ImageRecord } from '../../tasks/task';
import { seededBytes, tempDir } from '../helpers/disk-corpus';
import { sdkClient } from '../helpers/ec2-clients';
import { makeSystemDisk } from '../helpers/guest-images';
import { makeKeyPair, makeOpensslBundle, type KeyPair } from '../helpers/euca-bundle';
import { clientFor, objectBytes, runCli, sha256, startTestService, type Endpoints } from './import-driver';

const MiB = 1024 ** 2;

let service: RunningService;
let endpoints: Endpoints;
let dir: string;
let dataDir: string;
let user: KeyPair;
let disk: { path: string; size: number };

beforeAll(async () => {
  dir = tempDir('e2e-bundle-cli-');
  dataDir = join(dir, 'data');
  // A disk the validate stage accepts as a machine image (boot loader, OS).
  disk = makeSystemDisk(dir, { name: 'disk.raw' });
  // s3rver assembles a completed multipart upload inside the request: for the 8 GiB image that is
  // minutes of silence on a loaded machine, past the embedded S3 front's 60 s idle timeout.
  process.env.IMAGING_S3_IDLE_TIMEOUT_MS = String(15 * 60_000);
  ({ service, endpoints } = await startTestService(dir));
  user = makeKeyPair(dir, 'user');
  // Each test may run alone: the signing certificate is there from the start (cert add of it again changes nothing).
  await addSigningCertificate(service.tasks, service.credentials.accountId, user.certPem);
}, 120_000);

afterAll(async () => {
  await service?.stop();
});

const cli = async (...args: string[]) => (await runCli(endpoints, args)).stdout;

test('cloud-cert prints the certificate of the key serve made once (0600), and cert add/list/delete manage an account\'s certificates', async () => {
  const printed = await cli('cloud-cert', '--data-dir', dataDir);
  expect(printed).toBe(service.cloudCertificate);
  const cert = new X509Certificate(printed);
  expect(cert.checkPrivateKey(createPrivateKey(readFileSync(join(dataDir, 'cloud-key.pem'))))).toBe(true);
  expect((execFileSync('stat', ['-c', '%a', join(dataDir, 'cloud-key.pem')]).toString().trim())).toBe('600');

  const account = service.credentials.accountId;
  const added = await cli('cert', 'add', account, user.certPath, '--data-dir', dataDir);
  const [id, fingerprint] = added.trim().split('\t');
  expect(fingerprint).toBe(new X509Certificate(user.certPem).fingerprint256);
  const throwaway = makeKeyPair(dir, 'throwaway');
  const second = (await cli('cert', 'add', account, throwaway.certPath, '--data-dir', dataDir)).split('\t')[0];
  const listed = JSON.parse(await cli('cert', 'list', account, '--json', '--data-dir', dataDir));
  expect(listed.map((c: { id: string }) => c.id).sort()).toEqual([id, second].sort());
  await cli('cert', 'delete', account, second, '--data-dir', dataDir);
  expect(JSON.parse(await cli('cert', 'list', account, '--json', '--data-dir', dataDir)).map((c: { id: string }) => c.id)).toEqual([id]);
  await expect(cli('cert', 'add', account, disk.path, '--data-dir', dataDir)).rejects.toMatchObject({ stderr: expect.stringContaining('no PEM certificate') });
}, 120_000);

test('bundle-image, upload-bundle, register-image --wait, describe-images --json: the image comes out byte for byte; unbundle gives it back locally', async () => {
  const cloudCert = join(dir, 'cloud.pem');
  writeFileSync(cloudCert, await cli('cloud-cert', '--data-dir', dataDir));
  const out = join(dir, 'bundled');
  const made = await cli('bundle-image', disk.path, '--cloud-cert', cloudCert, '--cert', user.certPath, '--private-key', user.keyPath, '-d', out, '--part-size', '0.25', '--no-progress');
  const manifest = made.split('\t')[0];
  expect(readdirSync(out).filter((f) => f.includes('.part.')).length).toBeGreaterThan(1);

  // unbundle checks what the service checks; with the user's key it reads the user_* fields.
  const local = await cli('unbundle', manifest, '-k', user.keyPath, '--cert', user.certPath, '-d', join(dir, 'unbundled'), '--no-progress');
  expect(local).toContain('signature verified');
  expect(sha256(readFileSync(join(dir, 'unbundled', basename(disk.path))))).toBe(sha256(readFileSync(disk.path)));

  const location = (await cli('upload-bundle', manifest, '--bucket', 'cli-bundles', '--prefix', 'b/', '--no-progress')).trim();
  expect(location).toBe(`cli-bundles/b/${basename(disk.path)}.manifest.xml`);
  const image = JSON.parse(await cli('register-image', location, '--name', 'cli-disk', '--wait', '--json', '--no-progress'));
  expect(image).toMatchObject({ state: 'available', imageType: 'machine', layout: 'disk', rootDeviceType: 'instance-store', imageLocation: location });
  expect(image.imageId).toMatch(/^emi-/);
  expect(image.imageSha256).toBe(sha256(readFileSync(disk.path)));
  const [described] = JSON.parse(await cli('describe-images', image.imageId, '--json'));
  expect(described).toEqual(image);
  const [, bucket, key] = /^s3:\/\/([^/]+)\/(.+)$/.exec(described.imageStoreLocation)!;
  expect(sha256(await objectBytes(service.s3, bucket, key))).toBe(image.imageSha256);

  // @aws-sdk/client-ec2 reads the same image, and registers a kernel bundled by bundle-image.
  const ec2 = sdkClient(endpoints.ec2, endpoints.creds);
  const viaSdk = (await ec2.send(new DescribeImagesCommand({ ImageIds: [image.imageId] }))).Images![0];
  expect(viaSdk).toMatchObject({ ImageId: image.imageId, State: 'available', ImageType: 'machine', RootDeviceType: 'instance-store', Name: 'cli-disk' });
  const kernel = join(dir, 'vmlinuz-cli');
  writeFileSync(kernel, seededBytes(2 * MiB + 5, 41));
  const kManifest = (await cli('bundle-image', kernel, '--cloud-cert', cloudCert, '--private-key', user.keyPath, '--type', 'kernel', '-d', join(dir, 'kb'), '--no-progress')).split('\t')[0];
  const kLocation = (await cli('upload-bundle', kManifest, '--bucket', 'cli-bundles', '--no-progress')).trim();
  const { ImageId: kernelId } = await ec2.send(new RegisterImageCommand({ ImageLocation: kLocation, Name: 'cli-kernel' }));
  expect(kernelId).toMatch(/^eki-/);
  const kImage = JSON.parse(await cli('describe-images', kernelId!, '--json'))[0];
  expect(['pending', 'available']).toContain(kImage.state);
  ec2.destroy();
}, 300_000);

/** SHA-256 of a file, streamed. */
function fileSha256(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path, { highWaterMark: 4 * MiB }).on('data', (c) => hash.update(c)).on('error', reject).on('end', () => resolve(hash.digest('hex')));
  });
}

test('a sparse image over 8 GiB bundled by GNU tar (sparse member, base-256 size) registers and is stored byte for byte', async () => {
  const sparsePath = join(dir, 'big.img');
  const size = 8 * 1024 * MiB + 3 * MiB + 4096;
  execFileSync('truncate', ['-s', String(size), sparsePath]);
  const head = seededBytes(70_000, 3);
  const far = seededBytes(5000, 4);
  const farOffset = 8 * 1024 * MiB + MiB + 17;
  const fd = openSync(sparsePath, 'r+');
  writeSync(fd, head, 0, head.length, 0);
  writeSync(fd, far, 0, far.length, farOffset);
  closeSync(fd);
  const cloudCert = join(dir, 'cloud-big.pem');
  writeFileSync(cloudCert, service.cloudCertificate);
  const cloud = { certPath: cloudCert, certPem: service.cloudCertificate, keyPath: '', keyPem: '' };
  // Registered as a ramdisk: what is proved is the bundle's way into the store, and the validate
  // stage judges a ramdisk's bytes as data (a machine image of random bytes would be refused as no OS).
  const made = makeOpensslBundle({ dir, imagePath: sparsePath, prefix: 'big', partSize: MiB, cloud, user, sparse: true, imageType: 'ramdisk' });
  // The tar header's real size is over octal's 8 GiB: GNU tar writes it base-256 (high bit set).
  // (No pipefail: head closing the pipe after 512 bytes stops gzip with SIGPIPE.)
  const header = execFileSync('bash', ['-c', 'cat "${@:3}" | openssl enc -d -aes-128-cbc -K "$1" -iv "$2" 2>/dev/null | gzip -dc 2>/dev/null | head -c 512', '_', made.keyHex, made.ivHex, ...made.partPaths], { maxBuffer: 1024 * 1024 });
  expect(header.length).toBe(512);
  expect(String.fromCharCode(header[156])).toBe('S'); // a GNU sparse member
  expect(header[483] & 0x80).toBe(0x80); // its real-size field (old GNU header, offset 483) in base-256
  expect(header.readBigUInt64BE(487)).toBe(BigInt(size));
  const { s3 } = await clientFor(endpoints);
  await s3.send(new CreateBucketCommand({ Bucket: 'big-bundles' }));
  for (const path of [made.manifestPath, ...made.partPaths]) await s3.send(new PutObjectCommand({ Bucket: 'big-bundles', Key: basename(path), Body: readFileSync(path) }));
  const image = JSON.parse(await cli('register-image', 'big-bundles/big.manifest.xml', '--name', 'big-sparse', '--wait', '--json', '--no-progress'));
  expect([image.state, image.stateReason]).toEqual(['available', undefined]);
  const record = (await service.tasks.getResource(image.imageId)) as ImageRecord;
  const head0 = await service.s3.send(new HeadObjectCommand({ Bucket: record.image!.bucket, Key: record.image!.key }));
  expect(Number(head0.ContentLength)).toBe(size);
  // The data regions as the store serves them, and the SHA-256 of every byte streamed into the store.
  const range = async (offset: number, length: number) => {
    const res = await service.s3.send(new GetObjectCommand({ Bucket: record.image!.bucket, Key: record.image!.key, Range: `bytes=${offset}-${offset + length - 1}` }));
    return Buffer.from(await res.Body!.transformToByteArray());
  };
  expect((await range(0, head.length)).equals(head)).toBe(true);
  expect((await range(farOffset - 100, far.length + 200)).equals(Buffer.concat([Buffer.alloc(100), far, Buffer.alloc(100)]))).toBe(true);
  expect((await range(size - 4096, 4096)).equals(Buffer.alloc(4096))).toBe(true);
  expect(image.imageSha256).toBe(await fileSha256(sparsePath));
}, 900_000);
