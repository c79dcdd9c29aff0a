/**
 * SIGTERM drains with a deadline (issue #10 item 9), with real processes: two convert stage
 * processes on a real nats-server and moto_server (which lists multipart uploads). Replica A
 * writes through a proxy that makes its upload crawl, so its conversion is long; it gets SIGTERM
 * and must exit within its drain deadline (IMAGING_DRAIN_DEADLINE_MS) plus the hand-back clean-up,
 * having nak'ed the event and aborted its multipart upload. Replica B takes the event over at once
 * and finishes the task with the uploaded bytes; no multipart upload is left behind.
 */
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { seededBytes } from '../helpers/disk-corpus';
import { describeWithMoto, type RunningMotoServer } from '../helpers/moto-server';
import { startStageRig, type StageRig } from '../helpers/stage-rig';
import { startThrottleProxy, type ThrottleProxy } from '../helpers/throttle-proxy';
import { objectBytes } from '../e2e/import-driver';
import { createDecryptedTask } from '../helpers/decrypted-task';

jest.setTimeout(120_000);

const TASK = 'import-vol-d4a1b0c5';
const DRAIN_DEADLINE_MS = 1500;

describeWithMoto('SIGTERM drain with a deadline (moto_server)', () => {
  let rig: StageRig<RunningMotoServer>;
  let proxy: ThrottleProxy;

  beforeAll(async () => {
    rig = await startStageRig({ s3: 'moto', name: 'drain' });
    // 256 KiB/s: a 5 MiB part takes 20 s to upload through it.
    proxy = await startThrottleProxy(rig.s3.endpoint, 256 * 1024);
  });

  afterAll(async () => {
    await rig?.stop();
    await proxy?.stop();
  });

  const stageEnv = {
    IMAGING_MEMORY_LIMIT_MB: '64',
    IMAGING_DRAIN_DEADLINE_MS: String(DRAIN_DEADLINE_MS),
  };

  const uploadsLeft = async () => (await rig.s3.s3.send(new ListMultipartUploadsCommand({ Bucket: 'drain-images' }))).Uploads ?? [];

  test('a replica past its drain deadline hands the conversion back and cleans up; another replica finishes it', async () => {
    const content = seededBytes(12 * 2 ** 20 + 4096, 21);
    await createDecryptedTask(rig.s3.s3, rig.tasks, { id: TASK, content });

    const slow = await rig.startStage('convert', stageEnv, proxy.endpoint);
    await rig.bus.publish(makeEvent(EVENT_TYPES.bundleDecrypted, { taskId: TASK, accountId: '111122223333' }, 'test'));
    // Replica A is converting once its multipart upload exists.
    const started = Date.now() + 30_000;
    while ((await uploadsLeft()).length === 0) {
      if (Date.now() > started) throw new Error(`replica A never started uploading:\n${slow.output()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await rig.startStage('convert', stageEnv);

    const signalled = Date.now();
    slow.child.kill('SIGTERM');
    const code = await slow.exited;
    const tookMs = Date.now() - signalled;
    expect(code).toBe(0);
    // The deadline, the hand-back clean-up (at most 2 s) and closing connections.
    expect(tookMs).toBeLessThan(DRAIN_DEADLINE_MS + 4000);
    expect(slow.output()).toMatch(/handed back/);

    const task = await rig.leftState(TASK, 'bundle-decrypted', 60_000);
    expect([task?.state, task?.statusMessage]).toEqual(['disk-converted', 'Validating']);
    const image = task!.artifacts.image!;
    expect((await objectBytes(rig.s3.s3, image.bucket, image.key)).equals(content)).toBe(true);
    // A's aborted upload and B's completed one: nothing left in progress.
    expect(await uploadsLeft()).toEqual([]);
  });
});
