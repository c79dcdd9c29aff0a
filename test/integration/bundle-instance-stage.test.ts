/**
 * The export stage's BundleInstance work on the embedded S3 with per-account keys (each bucket is
 * its creator's; the service's key reaches all): the bundle is written with the account's own key,
 * so a bundle into another account's bucket fails with the reason and writes nothing; a part
 * upload that fails mid-way (an HTTP proxy in front of the S3 answers 500 to one part's PUT) fails
 * the attempt without crashing the process and leaves no file of the bundle, and the redelivered
 * attempt completes; the bundle verifies against the cloud certificate and unbundles, with the
 * cloud key, to the volume's bytes. Without a cloud key, and with the volume's bytes gone, the
 * task fails with its reason. The manifest stage, run as in the pipeline on a RegisterImage task,
 * accepts a BundleInstance-made manifest (signed with the cloud key) for the account that bundled,
 * and refuses the same bundle registered by another account and one signed by another cloud key,
 * each with its own message.
 */
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { generateKeyPairSync, X509Certificate } from 'crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { createServer, request, type Server } from 'http';
import type { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import pino from 'pino';
import { unbundleFiles } from '../../cli/commands/bundle-files';
import { startEmbeddedS3, type EmbeddedS3 } from '../../cli/embedded-s3';
import { makeEvent } from '../../events/make-event';
import { exportStage } from '../../functions/export/export-stage';
import { manifestStage } from '../../functions/manifest/manifest-stage';
import type { StageContext } from '../../functions/stage';
import { createAccount, type NewAccount } from '../../gateway/accounts';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument } from '../../tasks/task';
import { cloudCertificate } from '../../toolkit/bundle/cloud-key';
import { makeS3Client } from '../../toolkit/io/object-storage';
import { seededBytes } from '../helpers/disk-corpus';
import { sha256 } from '../e2e/import-driver';

const MiB = 1024 ** 2;
const SERVICE = { accessKeyId: 'AKIDSERVICEBUNDLE', secretAccessKey: 'service-secret' };
const IMAGES = 'imaging-images';
const SOURCE_KEY = 'images/import-i-0000000a/disk.raw';
// Incompressible, so the bundle has several 10 MiB parts.
const DISK = seededBytes(24 * MiB + 512, 33);
const newCloudKey = () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
const CLOUD_KEY = newCloudKey();
/** The key of another deployment's cloud: a bundle it signed is not this service's. */
const OTHER_CLOUD_KEY = newCloudKey();

let dir: string;
let s3: EmbeddedS3;
let tasks: SqliteTaskStore;
let alice: NewAccount;
let bob: NewAccount;
/** An HTTP proxy in front of the S3 that answers 500 to PUTs of keys `failPut` matches. */
let proxy: { endpoint: string; server: Server };
let failPut: RegExp | undefined;
const clients: S3Client[] = [];

const client = (key: { accessKeyId: string; secretAccessKey: string }, endpoint = s3.endpoint) => {
  const made = makeS3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, ...key });
  clients.push(made);
  return made;
};

function context(attempt: number, cloudPrivateKey: string | null = CLOUD_KEY): StageContext {
  return {
    tasks,
    s3: client(SERVICE),
    config: {
      storage: { endpoint: proxy.endpoint, region: 'us-east-1', forcePathStyle: true, ...SERVICE },
      imageBucket: IMAGES,
      allowedObjectHosts: [],
      uploadPollMs: 100,
      memoryLimitBytes: 64 * MiB,
      ...(cloudPrivateKey ? { cloudPrivateKey } : {}),
    },
    publish: async () => undefined,
    delivery: { attempt, working: () => undefined },
    log: pino({ level: 'silent' }),
  };
}

/** A BundleInstance task of `account` into `bucket`, as the gateway records it. */
async function bundleTask(id: string, account: NewAccount, bucket: string, prefix: string, sourceKey = SOURCE_KEY): Promise<TaskDocument> {
  const now = new Date().toISOString();
  const doc: TaskDocument = {
    id, kind: 'bundle-instance', accountId: account.accountId, state: 'export-requested', statusMessage: 'pending', progress: 0, bytesConverted: 0,
    request: {
      format: 'RAW', bytes: DISK.length, manifestUrl: '', volumeSizeGiB: 1,
      bundleInstance: {
        instanceId: 'i-0000000000000000a', volumeId: 'vol-0000000000000000a', source: { bucket: IMAGES, key: sourceKey, size: DISK.length },
        architecture: 'x86_64', s3Bucket: bucket, s3Prefix: prefix,
      },
    },
    artifacts: {}, history: [{ at: now, from: null, to: 'export-requested' }], createdAt: now, updatedAt: now,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(), version: 0,
  };
  await tasks.create(doc);
  return doc;
}

/** A RegisterImage task of `account` for the bundle at `bucket`/`manifestKey`, as the gateway records it. */
async function registerTask(id: string, account: NewAccount, bucket: string, manifestKey: string): Promise<TaskDocument> {
  const now = new Date().toISOString();
  const doc: TaskDocument = {
    id, kind: 'register-bundle', accountId: account.accountId, state: 'pending-upload', statusMessage: 'Pending import-image upload', progress: 0, bytesConverted: 0,
    request: {
      format: 'RAW', bytes: DISK.length, manifestUrl: `s3://${bucket}/${manifestKey}`, volumeSizeGiB: 1,
      bundle: {
        imageId: `emi-${id.slice(-8)}`, imageType: 'machine', bucket, manifestKey, name: id, architecture: 'x86_64',
        rootDeviceName: '/dev/sda1', blockDeviceMappings: [], virtualizationType: 'hvm',
      },
    },
    artifacts: {}, history: [{ at: now, from: null, to: 'pending-upload' }], createdAt: now, updatedAt: now,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(), version: 0,
  };
  await tasks.create(doc);
  return doc;
}

/** The manifest stage as the pipeline runs it: on the event that starts a RegisterImage task. */
const verify = (doc: TaskDocument, ctx: StageContext) => manifestStage.handle(makeEvent('io.imaging.import.requested', { taskId: doc.id, accountId: doc.accountId }, 'test'), ctx);

const run = (doc: TaskDocument, ctx: StageContext) => exportStage.handle(makeEvent('io.imaging.export.requested', { taskId: doc.id, accountId: doc.accountId }, 'test'), ctx);
const keysIn = async (bucket: string, prefix = '') => ((await client(SERVICE).send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!).sort();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bundle-instance-stage-'));
  tasks = SqliteTaskStore.open(':memory:');
  alice = await createAccount(tasks, 'alice-bundle');
  bob = await createAccount(tasks, 'bob-bundle');
  s3 = await startEmbeddedS3({
    host: '127.0.0.1', port: 0, directory: join(dir, 's3'), serviceKeys: [SERVICE], imageBucket: IMAGES,
    lookupKey: async (id) => {
      const key = await tasks.getKey(id);
      return key && { accountId: key.accountId, secretAccessKey: key.secretAccessKey };
    },
  });
  const target = new URL(s3.endpoint);
  const server = createServer((req, res) => {
    if (req.method === 'PUT' && failPut?.test(req.url ?? '')) {
      req.resume();
      req.on('end', () => res.writeHead(500, { 'content-type': 'application/xml' }).end('<Error><Code>InternalError</Code><Message>injected</Message></Error>'));
      return;
    }
    const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy = { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
  const service = client(SERVICE);
  await service.send(new CreateBucketCommand({ Bucket: IMAGES }));
  await service.send(new PutObjectCommand({ Bucket: IMAGES, Key: SOURCE_KEY, Body: DISK }));
  await client(alice).send(new CreateBucketCommand({ Bucket: 'alice-bundles' }));
  await client(bob).send(new CreateBucketCommand({ Bucket: 'bob-bundles' }));
});

afterAll(async () => {
  clients.forEach((c) => c.destroy());
  await new Promise((resolve) => proxy?.server.close(resolve));
  proxy?.server.closeAllConnections();
  await s3?.stop();
  await tasks?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("a bundle into another account's bucket fails with the reason, and writes nothing there", async () => {
  const doc = await bundleTask('bun-000000b1', bob, 'alice-bundles', 'stolen');
  await run(doc, context(1));
  const ended = (await tasks.get(doc.id))!;
  expect(ended.state).toBe('failed');
  expect(ended.statusMessage).toBe("ClientError: the bundle may not write to the S3 bucket alice-bundles with your account's credentials; grant it write access and bundle the instance again");
  expect(await keysIn('alice-bundles')).toEqual([]);

  // A bucket that is not there: the message says what to do, for a bundle (not an export).
  const nowhere = await bundleTask('bun-000000b2', bob, 'no-such-bundles', 'lost');
  await run(nowhere, context(1));
  expect((await tasks.get(nowhere.id))!.statusMessage).toBe('ClientError: the S3 bucket no-such-bundles does not exist; create it (and allow the bundle to write to it) and bundle the instance again');
});

test('a part upload that fails mid-way leaves no file of the bundle; the redelivered attempt completes, and the bundle unbundles to the disk', async () => {
  const doc = await bundleTask('bun-000000a1', alice, 'alice-bundles', 'vms/web');
  failPut = /\/vms\/web\.part\.01(\?|$)/;
  try {
    // Not the user's fault: the attempt fails (the bus will deliver again), the task goes on.
    await expect(run(doc, context(1))).rejects.toThrow();
  } finally {
    failPut = undefined;
  }
  const between = (await tasks.get(doc.id))!;
  expect([between.state, between.statusMessage]).toEqual(['export-requested', 'bundling']);
  expect(await keysIn('alice-bundles', 'vms/')).toEqual([]);

  await run(doc, context(2));
  const ended = (await tasks.get(doc.id))!;
  expect([ended.state, ended.progress, ended.bytesConverted]).toEqual(['completed', 100, DISK.length]);
  const files = await keysIn('alice-bundles', 'vms/');
  expect(files).toEqual(['vms/web.manifest.xml', 'vms/web.part.00', 'vms/web.part.01', 'vms/web.part.02']);
  expect(ended.artifacts.bundled).toMatchObject({ bucket: 'alice-bundles', manifestKey: 'vms/web.manifest.xml', partKeys: files.slice(1) });

  // Alice's to read; it verifies against the cloud certificate and the cloud key opens it.
  const local = join(dir, 'alice');
  const mine = client(alice);
  writeFileSync(join(dir, 'cloud-key.pem'), CLOUD_KEY);
  writeFileSync(join(dir, 'cloud-cert.pem'), cloudCertificate(CLOUD_KEY));
  // The manifest names its parts without the key's directory, as files next to it.
  for (const key of files) {
    const base = key.replace('vms/', '');
    writeFileSync(join(dir, base), Buffer.from(await (await mine.send(new GetObjectCommand({ Bucket: 'alice-bundles', Key: key }))).Body!.transformToByteArray()));
  }
  const out = await unbundleFiles(join(dir, 'web.manifest.xml'), { privateKey: join(dir, 'cloud-key.pem'), cert: join(dir, 'cloud-cert.pem'), destination: local, progress: false });
  expect([out.signature, out.size]).toEqual(['verified', DISK.length]);
  expect(sha256(readFileSync(out.path))).toBe(sha256(DISK));
});

test('without a cloud key, and with the volume\'s bytes gone, the task fails with its reason and nothing is written', async () => {
  const noKey = await bundleTask('bun-000000c1', alice, 'alice-bundles', 'nokey');
  await run(noKey, context(1, null));
  expect((await tasks.get(noKey.id))!.statusMessage).toMatch(/^ClientError: this service has no cloud key \(IMAGING_CLOUD_KEY_FILE\)/);

  await client(SERVICE).send(new PutObjectCommand({ Bucket: IMAGES, Key: 'images/gone/disk.raw', Body: DISK }));
  const gone = await bundleTask('bun-000000c2', alice, 'alice-bundles', 'gone', 'images/gone/disk.raw');
  await client(SERVICE).send(new DeleteObjectCommand({ Bucket: IMAGES, Key: 'images/gone/disk.raw' }));
  await run(gone, context(1));
  const ended = (await tasks.get(gone.id))!;
  expect([ended.state, ended.statusMessage]).toEqual(['failed', 'ClientError: the disk to bundle is gone: volume vol-0000000000000000a of instance i-0000000000000000a was deleted']);
  expect([...(await keysIn('alice-bundles', 'nokey')), ...(await keysIn('alice-bundles', 'gone'))]).toEqual([]);
});

test('the manifest stage accepts a BundleInstance manifest for the account that bundled; it refuses a copy registered by another account, and a manifest another cloud key signed', async () => {
  const bundled = await bundleTask('bun-000000d1', alice, 'alice-bundles', 'verify/db');
  await run(bundled, context(1));
  const otherCloud = await bundleTask('bun-000000d2', alice, 'alice-bundles', 'verify/elsewhere');
  await run(otherCloud, context(1, OTHER_CLOUD_KEY));
  expect([(await tasks.get(bundled.id))!.state, (await tasks.get(otherCloud.id))!.state]).toEqual(['completed', 'completed']);

  // The account that bundled registers its bundle: the signature verifies against the cloud certificate.
  const mine = await registerTask('reg-000000d1', alice, 'alice-bundles', 'verify/db.manifest.xml');
  await verify(mine, context(1));
  const accepted = (await tasks.get(mine.id))!;
  expect([accepted.state, accepted.statusMessage]).toEqual(['manifest-received', 'Verifying uploaded parts']);
  const files = await keysIn('alice-bundles', 'verify/db.');
  expect(accepted.artifacts.bundle).toMatchObject({
    imageType: 'machine',
    size: DISK.length,
    signedBy: new X509Certificate(cloudCertificate(CLOUD_KEY)).fingerprint256,
    parts: files.filter((k) => k.includes('.part.')).map((key, index) => ({ index, key })),
  });

  // Bob copies the bundle, byte for byte, into his own bucket and registers it there.
  const reader = client(alice);
  const writer = client(bob);
  for (const key of files) {
    const body = Buffer.from(await (await reader.send(new GetObjectCommand({ Bucket: 'alice-bundles', Key: key }))).Body!.transformToByteArray());
    await writer.send(new PutObjectCommand({ Bucket: 'bob-bundles', Key: key, Body: body }));
  }
  const copied = await registerTask('reg-000000d2', bob, 'bob-bundles', 'verify/db.manifest.xml');
  await verify(copied, context(1));
  const refusedCopy = (await tasks.get(copied.id))!;
  expect([refusedCopy.state, refusedCopy.statusMessage]).toEqual([
    'failed',
    'ClientError: the bundle manifest was made by BundleInstance for another account (its <user> is not yours); only the account that bundled an instance can register its bundle',
  ]);

  // Alice's own bundle, but signed by another cloud's key: not this service's, and she has no certificate of her own.
  const foreign = await registerTask('reg-000000d3', alice, 'alice-bundles', 'verify/elsewhere.manifest.xml');
  await verify(foreign, context(1));
  const refusedForeign = (await tasks.get(foreign.id))!;
  expect([refusedForeign.state, refusedForeign.statusMessage]).toEqual([
    'failed',
    'ClientError: the bundle manifest is signed but your account has no signing certificate registered; register it with `imaging cert add`',
  ]);
  expect(refusedForeign.artifacts.bundle).toBeUndefined();
  expect(refusedCopy.artifacts.bundle).toBeUndefined();
});
