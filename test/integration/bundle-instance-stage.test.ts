/**
 * The export stage's BundleInstance work on the embedded S3 with per-account keys (each bucket is
 * its creator's; the service's key reaches all): the bundle is written with the account's own key,
 * so a bundle into another account's bucket fails with the reason and writes nothing; a part
 * upload that fails mid-way (an HTTP proxy in front of the S3 answers 500 to one part's PUT) fails
 * the attempt without crashing the process and leaves no file of the bundle, and the redelivered
 * attempt completes; the bundle verifies against the cloud certificate and unbundles, with the
 * cloud key, to the volume's bytes. Without a cloud key, and with the volume's bytes gone, the
 * task fails with its reason.
 */
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { generateKeyPairSync } from 'crypto';
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
const CLOUD_KEY = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

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
  expect(ended.statusMessage).toMatch(/^ClientError: the export may not write to the S3 bucket alice-bundles with your account's credentials/);
  expect(await keysIn('alice-bundles')).toEqual([]);
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
