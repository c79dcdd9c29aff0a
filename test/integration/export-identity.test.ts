/**
 * The export stage writes into the user's bucket with the account's own key pair, never the
 * service's. Proved on the embedded S3 with per-account keys (cli/embedded-s3.ts): each bucket
 * belongs to the account that created it and the service's key reaches every bucket. So an
 * export by account B into account A's bucket fails with a reason the user can act on (it would
 * succeed with the service's key), nothing lands in A's bucket, and A's own export into it
 * completes and is A's to read.
 */
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import pino from 'pino';
import { startEmbeddedS3, type EmbeddedS3 } from '../../cli/embedded-s3';
import { makeEvent } from '../../events/make-event';
import { exportStage } from '../../functions/export/export-stage';
import type { StageContext } from '../../functions/stage';
import { createAccount, type NewAccount } from '../../gateway/accounts';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument } from '../../tasks/task';
import { makeS3Client } from '../../toolkit/io/object-storage';
import { seededBytes } from '../helpers/disk-corpus';

const SERVICE = { accessKeyId: 'AKIDSERVICEEXPORT', secretAccessKey: 'service-secret' };
const IMAGES = 'imaging-images';
const SOURCE_KEY = 'images/import-ami-0000000000000000a/disk.raw';
const DISK = seededBytes(6 * 1024 * 1024 + 512, 21);

let dir: string;
let s3: EmbeddedS3;
let tasks: SqliteTaskStore;
let alice: NewAccount;
let bob: NewAccount;
const clients: S3Client[] = [];

const client = (key: { accessKeyId: string; secretAccessKey: string }) => {
  const made = makeS3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, ...key });
  clients.push(made);
  return made;
};

function context(): StageContext {
  return {
    tasks,
    s3: client(SERVICE),
    config: {
      storage: { endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, ...SERVICE },
      imageBucket: IMAGES,
      allowedObjectHosts: [new URL(s3.endpoint).host],
      uploadPollMs: 100,
      memoryLimitBytes: 64 * 2 ** 20,
    },
    publish: async () => undefined,
    delivery: { attempt: 1, working: () => undefined },
    log: pino({ level: 'silent' }),
  };
}

/** An ExportImage task of `account` into `bucket`, as the gateway records it. */
async function exportTask(id: string, account: NewAccount, bucket: string): Promise<TaskDocument> {
  const now = new Date().toISOString();
  const doc: TaskDocument = {
    id, kind: 'export-image', accountId: account.accountId, state: 'export-requested', statusMessage: 'Exporting', progress: 0, bytesConverted: 0,
    request: {
      format: 'RAW', bytes: DISK.length, manifestUrl: '', volumeSizeGiB: 1,
      export: {
        imageId: 'ami-0000000000000000a', snapshotId: 'snap-0000000000000000a', source: { bucket: IMAGES, key: SOURCE_KEY, size: DISK.length },
        diskImageFormat: 'RAW', s3Bucket: bucket, s3Prefix: 'exports/', s3Key: `exports/${id}.raw`,
      },
    },
    artifacts: {}, history: [{ at: now, from: null, to: 'export-requested' }], createdAt: now, updatedAt: now,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(), version: 0,
  };
  await tasks.create(doc);
  return doc;
}

const run = (doc: TaskDocument) => exportStage.handle(makeEvent('io.imaging.export.requested', { taskId: doc.id, accountId: doc.accountId }, 'test'), context());

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'export-identity-'));
  tasks = SqliteTaskStore.open(':memory:');
  alice = await createAccount(tasks, 'alice-export');
  bob = await createAccount(tasks, 'bob-export');
  s3 = await startEmbeddedS3({
    host: '127.0.0.1', port: 0, directory: join(dir, 's3'), serviceKeys: [SERVICE], imageBucket: IMAGES,
    lookupKey: async (id) => {
      const key = await tasks.getKey(id);
      return key && { accountId: key.accountId, secretAccessKey: key.secretAccessKey };
    },
  });
  const service = client(SERVICE);
  await service.send(new CreateBucketCommand({ Bucket: IMAGES }));
  await service.send(new PutObjectCommand({ Bucket: IMAGES, Key: SOURCE_KEY, Body: DISK }));
  await client(alice).send(new CreateBucketCommand({ Bucket: 'alice-bucket' }));
  await client(bob).send(new CreateBucketCommand({ Bucket: 'bob-bucket' }));
});

afterAll(async () => {
  clients.forEach((c) => c.destroy());
  await s3?.stop();
  await tasks?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("an export by another account into alice's bucket fails with the reason, and writes nothing there", async () => {
  const doc = await exportTask('export-ami-000000000000000b1', bob, 'alice-bucket');
  await run(doc);
  const ended = (await tasks.get(doc.id))!;
  expect(ended.state).toBe('failed');
  expect(ended.statusMessage).toMatch(/^ClientError: the export may not write to the S3 bucket alice-bucket with your account's credentials/);
  const listed = await client(SERVICE).send(new ListObjectsV2Command({ Bucket: 'alice-bucket' }));
  expect(listed.Contents ?? []).toEqual([]);
});

test("alice's export into her bucket completes, and the object is hers to read", async () => {
  const doc = await exportTask('export-ami-000000000000000a1', alice, 'alice-bucket');
  await run(doc);
  const ended = (await tasks.get(doc.id))!;
  expect([ended.state, ended.statusMessage]).toEqual(['completed', '']);
  const object = await client(alice).send(new GetObjectCommand({ Bucket: 'alice-bucket', Key: `exports/${doc.id}.raw` }));
  expect(Buffer.from(await object.Body!.transformToByteArray()).equals(DISK)).toBe(true);
  // And bob's key cannot read it: the bucket is alice's.
  await expect(client(bob).send(new GetObjectCommand({ Bucket: 'alice-bucket', Key: `exports/${doc.id}.raw` }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 403 } });
});

test('an account without a key pair cannot export: the task fails saying so', async () => {
  const keyless = { ...bob, accountId: '999999999999' };
  const doc = await exportTask('export-ami-000000000000000c1', keyless, 'bob-bucket');
  await run(doc);
  const ended = (await tasks.get(doc.id))!;
  expect([ended.state, ended.statusMessage]).toEqual(['failed', 'ClientError: account 999999999999 has no access key with which to write the export']);
});
