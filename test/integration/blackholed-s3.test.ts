/**
 * A blackholed S3 endpoint (accepts, never answers) at stage level (issue #10 item 3): a convert
 * stage process on a real nats-server whose S3 endpoint is a blackhole, with short S3 timeouts and
 * a short retry budget. The task is retried, then failed with a message naming the stage and the
 * cause, within the configured deadline (S3 timeouts × attempts + back-off); the replica is not
 * pinned: once the endpoint answers again, the same replica converts the next task.
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { join } from 'path';
import { JetStreamBus } from '../../events/jetstream-bus';
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument } from '../../tasks/task';
import { seededBytes, tempDir } from '../helpers/disk-corpus';
import { startBlackholeProxy, type BlackholeProxy } from '../helpers/blackhole-proxy';
import { startNatsServer, type RunningNatsServer } from '../helpers/nats-server';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { startStageProcess, type StageProcess } from '../helpers/stage-process';
import { objectBytes } from '../e2e/import-driver';
import { createDecryptedTask } from '../helpers/decrypted-task';

jest.setTimeout(120_000);

const S3_TIMEOUT_MS = 1000;
const S3_ATTEMPTS = 2;
const MAX_DELIVER = 2;
const BACKOFF_MS = 500;
// Each delivery: at most S3_ATTEMPTS silent calls (plus the SDK's short back-off) per S3 call it
// makes before failing; the bus waits BACKOFF_MS between deliveries; then the give-up.
const DEADLINE_MS = MAX_DELIVER * (S3_ATTEMPTS * (S3_TIMEOUT_MS + 1000)) + BACKOFF_MS + 5000;

let nats: RunningNatsServer;
let s3: RunningS3Server;
let blackhole: BlackholeProxy;
let tasks: SqliteTaskStore;
let dbPath: string;
let bus: JetStreamBus;
let stage: StageProcess | undefined;

beforeAll(async () => {
  [nats, s3] = await Promise.all([startNatsServer(), startS3Server()]);
  await s3.s3.send(new CreateBucketCommand({ Bucket: 'uploads' }));
  blackhole = await startBlackholeProxy(s3.endpoint);
  dbPath = join(tempDir('blackhole-'), 'tasks.db');
  tasks = SqliteTaskStore.open(dbPath);
  bus = await JetStreamBus.connect({ servers: nats.url, log: { warn: () => undefined, error: () => undefined } });
});

afterAll(async () => {
  await stage?.kill();
  await bus?.close();
  await tasks?.close();
  await blackhole?.stop();
  await Promise.all([nats?.stop(), s3?.stop()]);
});

async function decryptedTask(id: string, content: Buffer): Promise<void> {
  await createDecryptedTask(s3.s3, tasks, { id, content });
}

async function settled(id: string, timeoutMs: number): Promise<TaskDocument | undefined> {
  const until = Date.now() + timeoutMs;
  let task: TaskDocument | undefined;
  do {
    await new Promise((r) => setTimeout(r, 200));
    task = await tasks.get(id);
  } while (task && task.state === 'bundle-decrypted' && Date.now() < until);
  return task;
}

test('the task is retried, then failed naming the stage and the cause within the deadline; the replica takes the next task', async () => {
  stage = await startStageProcess('convert', {
    IMAGING_NATS_URL: nats.url,
    IMAGING_MONGODB_URI: `sqlite:${dbPath}`,
    IMAGING_S3_ENDPOINT: blackhole.endpoint,
    IMAGING_S3_ACCESS_KEY_ID: s3.accessKeyId,
    IMAGING_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    // Part URLs are presigned for s3rver itself.
    IMAGING_ALLOWED_OBJECT_HOSTS: new URL(s3.endpoint).host,
    IMAGING_IMAGE_BUCKET: 'blackhole-images',
    IMAGING_S3_TIMEOUT_MS: String(S3_TIMEOUT_MS),
    IMAGING_S3_MAX_ATTEMPTS: String(S3_ATTEMPTS),
    IMAGING_MAX_DELIVER: String(MAX_DELIVER),
    IMAGING_RETRY_BACKOFF_MS: String(BACKOFF_MS),
  });
  const content = seededBytes(2 * 2 ** 20 + 99, 31);
  await decryptedTask('import-vol-b1ac0001', content);
  const started = Date.now();
  await bus.publish(makeEvent(EVENT_TYPES.bundleDecrypted, { taskId: 'import-vol-b1ac0001', accountId: '111122223333' }, 'test'));
  const failed = await settled('import-vol-b1ac0001', DEADLINE_MS + 10_000);
  const tookMs = Date.now() - started;
  expect(failed?.state).toBe('failed');
  expect(failed?.statusMessage).toMatch(/^ServerError: the convert stage gave up: .*(time|Time)/);
  expect(tookMs).toBeLessThan(DEADLINE_MS);
  // Retried: more than one delivery reached the blackhole.
  expect(stage.output().match(/stage failed on this delivery/g)?.length).toBe(MAX_DELIVER);
  expect(blackhole.swallowed()).toBeGreaterThanOrEqual(MAX_DELIVER);

  // The endpoint answers again: the same replica converts the next task.
  blackhole.heal();
  await decryptedTask('import-vol-b1ac0002', content);
  await bus.publish(makeEvent(EVENT_TYPES.bundleDecrypted, { taskId: 'import-vol-b1ac0002', accountId: '111122223333' }, 'test'));
  const next = await settled('import-vol-b1ac0002', 30_000);
  expect([next?.state, next?.statusMessage]).toEqual(['disk-converted', 'Validating']);
  expect((await objectBytes(s3.s3, next!.artifacts.image!.bucket, next!.artifacts.image!.key)).equals(content)).toBe(true);
});
