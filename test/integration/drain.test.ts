/**
 * SIGTERM drains with a deadline (issue #10 item 9), with real processes: two convert stage
 * processes on a real nats-server and moto_server (which lists multipart uploads). Replica A
 * writes through a proxy that makes its upload crawl, so its conversion is long; it gets SIGTERM
 * and must exit within its drain deadline (IMAGING_DRAIN_DEADLINE_MS) plus the hand-back clean-up,
 * having nak'ed the event and aborted its multipart upload. Replica B takes the event over at once
 * and finishes the task with the uploaded bytes; no multipart upload is left behind.
 */
import { CreateBucketCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { join } from 'path';
import { JetStreamBus } from '../../events/jetstream-bus';
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument } from '../../tasks/task';
import { seededBytes, tempDir } from '../helpers/disk-corpus';
import { describeWithMoto, startMotoServer, type RunningMotoServer } from '../helpers/moto-server';
import { startNatsServer, type RunningNatsServer } from '../helpers/nats-server';
import { startStageProcess, type StageProcess } from '../helpers/stage-process';
import { startThrottleProxy, type ThrottleProxy } from '../helpers/throttle-proxy';
import { objectBytes } from '../e2e/import-driver';
import { createDecryptedTask } from '../helpers/decrypted-task';

jest.setTimeout(120_000);

const TASK = 'import-vol-d4a1b0c5';
const DRAIN_DEADLINE_MS = 1500;

describeWithMoto('SIGTERM drain with a deadline (moto_server)', () => {
  let nats: RunningNatsServer;
  let moto: RunningMotoServer;
  let proxy: ThrottleProxy;
  let tasks: SqliteTaskStore;
  let dbPath: string;
  let bus: JetStreamBus;
  const stages: StageProcess[] = [];

  beforeAll(async () => {
    [nats, moto] = await Promise.all([startNatsServer(), startMotoServer()]);
    await moto.s3.send(new CreateBucketCommand({ Bucket: 'uploads' }));
    await moto.s3.send(new CreateBucketCommand({ Bucket: 'drain-images' }));
    // 256 KiB/s: a 5 MiB part takes 20 s to upload through it.
    proxy = await startThrottleProxy(moto.endpoint, 256 * 1024);
    dbPath = join(tempDir('drain-'), 'tasks.db');
    tasks = SqliteTaskStore.open(dbPath);
    bus = await JetStreamBus.connect({ servers: nats.url, log: { warn: () => undefined, error: () => undefined } });
  });

  afterAll(async () => {
    await Promise.all(stages.map((s) => s.kill()));
    await bus?.close();
    await tasks?.close();
    await proxy?.stop();
    await Promise.all([nats?.stop(), moto?.stop()]);
  });

  const stageEnv = (s3Endpoint: string) => ({
    IMAGING_NATS_URL: nats.url,
    IMAGING_MONGODB_URI: `sqlite:${dbPath}`,
    IMAGING_S3_ENDPOINT: s3Endpoint,
    IMAGING_S3_ACCESS_KEY_ID: moto.accessKeyId,
    IMAGING_S3_SECRET_ACCESS_KEY: moto.secretAccessKey,
    // Part URLs are presigned for moto itself, whichever endpoint the replica writes through.
    IMAGING_ALLOWED_OBJECT_HOSTS: new URL(moto.endpoint).host,
    IMAGING_IMAGE_BUCKET: 'drain-images',
    IMAGING_MEMORY_LIMIT_MB: '64',
    IMAGING_DRAIN_DEADLINE_MS: String(DRAIN_DEADLINE_MS),
  });

  const uploadsLeft = async () => (await moto.s3.send(new ListMultipartUploadsCommand({ Bucket: 'drain-images' }))).Uploads ?? [];

  test('a replica past its drain deadline hands the conversion back and cleans up; another replica finishes it', async () => {
    const content = seededBytes(12 * 2 ** 20 + 4096, 21);
    await createDecryptedTask(moto.s3, tasks, { id: TASK, content });

    const slow = await startStageProcess('convert', stageEnv(proxy.endpoint));
    stages.push(slow);
    await bus.publish(makeEvent(EVENT_TYPES.bundleDecrypted, { taskId: TASK, accountId: '111122223333' }, 'test'));
    // Replica A is converting once its multipart upload exists.
    const started = Date.now() + 30_000;
    while ((await uploadsLeft()).length === 0) {
      if (Date.now() > started) throw new Error(`replica A never started uploading:\n${slow.output()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const other = await startStageProcess('convert', stageEnv(moto.endpoint));
    stages.push(other);

    const signalled = Date.now();
    slow.child.kill('SIGTERM');
    const code = await slow.exited;
    const tookMs = Date.now() - signalled;
    expect(code).toBe(0);
    // The deadline, the hand-back clean-up (at most 2 s) and closing connections.
    expect(tookMs).toBeLessThan(DRAIN_DEADLINE_MS + 4000);
    expect(slow.output()).toMatch(/handed back/);

    let task: TaskDocument | undefined;
    const until = Date.now() + 60_000;
    do {
      await new Promise((r) => setTimeout(r, 250));
      task = await tasks.get(TASK);
    } while (task && task.state === 'bundle-decrypted' && Date.now() < until);
    expect([task?.state, task?.statusMessage]).toEqual(['disk-converted', 'Validating']);
    const image = task!.artifacts.image!;
    expect((await objectBytes(moto.s3, image.bucket, image.key)).equals(content)).toBe(true);
    // A's aborted upload and B's completed one: nothing left in progress.
    expect(await uploadsLeft()).toEqual([]);
  });
});
