/**
 * The retry budget (issue #10 item 7) against a real outage: a convert stage process on a real
 * nats-server, configured with a short budget (3 attempts, waits of 3 s then 4 s), converts a
 * task whose S3 server (s3rver) is down for the first 5 s. The task survives the outage and its
 * output is the uploaded bytes. (Before the budget was configurable, the waits were 1 s then 2 s
 * and the third attempt came during the outage: the task was failed.)
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { join } from 'path';
import { JetStreamBus } from '../../events/jetstream-bus';
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument } from '../../tasks/task';
import { seededBytes, tempDir } from '../helpers/disk-corpus';
import { startNatsServer, type RunningNatsServer } from '../helpers/nats-server';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { startStageProcess, type StageProcess } from '../helpers/stage-process';
import { objectBytes } from '../e2e/import-driver';
import { createDecryptedTask } from '../helpers/decrypted-task';

jest.setTimeout(90_000);

let nats: RunningNatsServer;
let s3: RunningS3Server;
let tasks: SqliteTaskStore;
let dbPath: string;
let stage: StageProcess | undefined;
let bus: JetStreamBus;

beforeAll(async () => {
  [nats, s3] = await Promise.all([startNatsServer(), startS3Server()]);
  await s3.s3.send(new CreateBucketCommand({ Bucket: 'uploads' }));
  dbPath = join(tempDir('retry-budget-'), 'tasks.db');
  tasks = SqliteTaskStore.open(dbPath);
  bus = await JetStreamBus.connect({ servers: nats.url, log: { warn: () => undefined, error: () => undefined } });
});

afterAll(async () => {
  await stage?.kill();
  await bus?.close();
  await tasks?.close();
  await Promise.all([nats?.stop(), s3?.stop()]);
});

async function decryptedTask(id: string, content: Buffer): Promise<void> {
  await createDecryptedTask(s3.s3, tasks, { id, content });
}

test('a task survives a 5 s S3 outage within a configured budget of 3 attempts 3 s and 4 s apart', async () => {
  stage = await startStageProcess('convert', {
    IMAGING_NATS_URL: nats.url,
    IMAGING_MONGODB_URI: `sqlite:${dbPath}`,
    IMAGING_S3_ENDPOINT: s3.endpoint,
    IMAGING_S3_ACCESS_KEY_ID: s3.accessKeyId,
    IMAGING_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    IMAGING_IMAGE_BUCKET: 'budget-images',
    IMAGING_MAX_DELIVER: '3',
    IMAGING_RETRY_BACKOFF_MS: '3000',
    IMAGING_RETRY_BACKOFF_MAX_MS: '4000',
  });
  const content = seededBytes(3 * 2 ** 20 + 7, 11);
  await decryptedTask('import-vol-0b0d9e71', content);

  await s3.goDown();
  const outageStarted = Date.now();
  await bus.publish(makeEvent(EVENT_TYPES.bundleDecrypted, { taskId: 'import-vol-0b0d9e71', accountId: '111122223333' }, 'test'));
  // The first attempts fail on the refused connection while S3 is down.
  const deadline = Date.now() + 5000;
  while (!/stage failed on this delivery/.test(stage.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(stage.output()).toMatch(/stage failed on this delivery/);
  await new Promise((r) => setTimeout(r, Math.max(0, 5000 - (Date.now() - outageStarted))));
  await s3.comeBack();

  let task: TaskDocument | undefined;
  const until = Date.now() + 40_000;
  do {
    await new Promise((r) => setTimeout(r, 250));
    task = await tasks.get('import-vol-0b0d9e71');
  } while (task && !['disk-converted', 'failed', 'cancelled'].includes(task.state) && Date.now() < until);
  expect([task?.state, task?.statusMessage]).toEqual(['disk-converted', 'Validating']);
  const image = task!.artifacts.image!;
  expect((await objectBytes(s3.s3, image.bucket, image.key)).equals(content)).toBe(true);
});
