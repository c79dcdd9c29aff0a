/**
 * The decrypt stage's unbundle-to-store against a real S3 server (s3rver): each part is read with
 * one GET whose Content-Length is bounded before its body is read. A bundle made by openssl +
 * gzip + tar comes out byte for byte in the image store; a part over the accepted size and a
 * missing part are each refused with their own ClientError, and nothing is left in the image
 * store.
 */
import { createHash } from 'crypto';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { readFileSync, rmSync, writeFileSync } from 'fs';
import { basename, join } from 'path';
import { ClientError } from '../../functions/errors';
import { unbundleToStore } from '../../functions/bundle/unbundle-to-store';
import { verifiedBundle } from '../../functions/bundle/verify-manifest';
import type { StageContext } from '../../functions/stage';
import { rowOf } from '../../pipeline/table';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument } from '../../tasks/task';
import { parseBundleManifest } from '../../toolkit/bundle/bundle-manifest';
import { ensureBucket } from '../../toolkit/io/object-storage';
import { seededBytes, tempDir } from '../helpers/disk-corpus';
import { makeKeyPair, makeOpensslBundle, type OpensslBundle } from '../helpers/euca-bundle';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';

const MiB = 1024 ** 2;
const BUNDLES = 'user-bundles';
const IMAGES = 'imaging-images';
const ACCOUNT = '111122223333';
const MEMORY_LIMIT = 256 * MiB;
// Half incompressible, half zeros: several 1 MiB parts.
const DISK = Buffer.concat([seededBytes(3 * MiB + 512, 7), Buffer.alloc(2 * MiB)]);

let dir: string;
let server: RunningS3Server;
let tasks: SqliteTaskStore;
let bundle: OpensslBundle;
let cloudKeyPem: string;
let taskNumber = 0;

beforeAll(async () => {
  dir = tempDir('unbundle-to-store-');
  server = await startS3Server();
  tasks = SqliteTaskStore.open(join(dir, 'tasks.db'));
  const now = new Date().toISOString();
  await tasks.createAccount({ accountId: ACCOUNT, name: 'bundler', admin: false, createdAt: now });
  await tasks.createKey({ accessKeyId: server.accessKeyId, accountId: ACCOUNT, secretAccessKey: server.secretAccessKey, createdAt: now });
  writeFileSync(join(dir, 'disk.raw'), DISK);
  const cloud = makeKeyPair(dir, 'cloud');
  cloudKeyPem = cloud.keyPem;
  bundle = makeOpensslBundle({ dir, imagePath: join(dir, 'disk.raw'), prefix: 'disk', partSize: MiB, cloud, user: makeKeyPair(dir, 'user') });
  await ensureBucket(server.s3, BUNDLES);
}, 60_000);

afterAll(async () => {
  await tasks?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Uploads the bundle's parts afresh and makes a task in the decrypt stage's state for it. */
async function bundleTask(): Promise<TaskDocument> {
  for (const path of bundle.partPaths) await server.s3.send(new PutObjectCommand({ Bucket: BUNDLES, Key: `b/${basename(path)}`, Body: readFileSync(path) }));
  const manifest = parseBundleManifest(Buffer.from(bundle.manifestXml));
  const now = new Date().toISOString();
  const task: TaskDocument = {
    id: `bundle-reg-0${String(++taskNumber).padStart(16, '0')}`,
    kind: 'register-bundle',
    accountId: ACCOUNT,
    state: rowOf('decrypt').expects,
    statusMessage: '',
    progress: 0,
    bytesConverted: 0,
    request: {
      format: 'RAW',
      bytes: manifest.size,
      manifestUrl: `s3://${BUNDLES}/b/disk.manifest.xml`,
      volumeSizeGiB: 1,
      bundle: {
        imageId: 'emi-0123456789abcdef0', imageType: manifest.imageType, bucket: BUNDLES, manifestKey: 'b/disk.manifest.xml', name: 'disk',
        architecture: manifest.architecture, rootDeviceName: '/dev/sda1', blockDeviceMappings: [], virtualizationType: 'hvm',
      },
    },
    artifacts: { bundle: verifiedBundle(manifest, 'b/disk.manifest.xml', 'test') },
    history: [],
    createdAt: now,
    updatedAt: now,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(),
    version: 0,
  };
  await tasks.create(task);
  return task;
}

function stageContext(): StageContext {
  return {
    tasks,
    s3: server.s3,
    config: {
      storage: { endpoint: server.endpoint, region: server.region, accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey, forcePathStyle: true },
      imageBucket: IMAGES,
      allowedObjectHosts: [],
      uploadPollMs: 1000,
      memoryLimitBytes: MEMORY_LIMIT,
      cloudPrivateKey: cloudKeyPem,
    },
    publish: async () => undefined,
    delivery: { attempt: 1, working: () => undefined },
    log: { info: () => undefined, warn: () => undefined, error: () => undefined },
  } as StageContext;
}

async function imageStoreKeys(taskId: string): Promise<string[]> {
  const listed = await server.s3.send(new ListObjectsV2Command({ Bucket: IMAGES }));
  return (listed.Contents ?? []).map((o) => o.Key!).filter((key) => key.includes(taskId));
}

test('a bundle made by openssl + gzip + tar is stored byte for byte, with its SHA-256', async () => {
  expect(bundle.partPaths.length).toBeGreaterThan(2);
  const task = await bundleTask();
  const { image } = await unbundleToStore(stageContext(), task);
  const stored = Buffer.from(await (await server.s3.send(new GetObjectCommand({ Bucket: image.bucket, Key: image.key }))).Body!.transformToByteArray());
  expect(stored.equals(DISK)).toBe(true);
  expect(image.size).toBe(DISK.length);
  expect(image.sha256).toBe(createHash('sha256').update(DISK).digest('hex'));
}, 60_000);

test('a part larger than the accepted part size is refused from its Content-Length, and nothing is stored', async () => {
  const task = await bundleTask();
  // The bound is a quarter of the memory limit over the three parts in flight, at least 16 MiB.
  const oversize = Math.max(16 * MiB, Math.floor(MEMORY_LIMIT / 12)) + 1;
  const key = `b/${basename(bundle.partPaths[1])}`;
  await server.s3.send(new PutObjectCommand({ Bucket: BUNDLES, Key: key, Body: Buffer.alloc(oversize) }));
  const refused = unbundleToStore(stageContext(), task);
  await expect(refused).rejects.toThrow(ClientError);
  await expect(refused).rejects.toThrow(`bundle part 1 (${key}) is ${oversize} bytes; parts of at most ${oversize - 1} bytes are accepted`);
  expect(await imageStoreKeys(task.id)).toEqual([]);
}, 60_000);

test('a missing part is refused as the user\'s to fix, and nothing is stored', async () => {
  const task = await bundleTask();
  const key = `b/${basename(bundle.partPaths[2])}`;
  await server.s3.send(new DeleteObjectCommand({ Bucket: BUNDLES, Key: key }));
  const refused = unbundleToStore(stageContext(), task);
  await expect(refused).rejects.toThrow(ClientError);
  await expect(refused).rejects.toThrow(`bundle part 2 (s3://${BUNDLES}/${key}) is missing or cannot be read with your account's credentials`);
  expect(await imageStoreKeys(task.id)).toEqual([]);
}, 60_000);
