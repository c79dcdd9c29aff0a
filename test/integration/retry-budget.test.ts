/**
 * The retry budget (issue #10 item 7) against a real outage: a convert stage process on a real
 * nats-server, configured with a short budget (3 attempts, waits of 3 s then 4 s), converts a
 * task whose S3 server (s3rver) is down for the first 5 s. The task survives the outage and its
 * output is the uploaded bytes. (Before the budget was configurable, the waits were 1 s then 2 s
 * and the third attempt came during the outage: the task was failed.)
 */
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { seededBytes } from '../helpers/disk-corpus';
import type { RunningS3Server } from '../helpers/s3-server';
import { startStageRig, type StageRig } from '../helpers/stage-rig';
import { objectBytes } from '../e2e/import-driver';
import { createDecryptedTask } from '../helpers/decrypted-task';

jest.setTimeout(90_000);

let rig: StageRig<RunningS3Server>;

beforeAll(async () => {
  rig = await startStageRig({ s3: 's3rver', name: 'budget' });
});

afterAll(async () => {
  await rig?.stop();
});

test('a task survives a 5 s S3 outage within a configured budget of 3 attempts 3 s and 4 s apart', async () => {
  const stage = await rig.startStage('convert', {
    IMAGING_MAX_DELIVER: '3',
    IMAGING_RETRY_BACKOFF_MS: '3000',
    IMAGING_RETRY_BACKOFF_MAX_MS: '4000',
  });
  const content = seededBytes(3 * 2 ** 20 + 7, 11);
  await createDecryptedTask(rig.s3.s3, rig.tasks, { id: 'import-vol-0b0d9e71', content });

  await rig.s3.goDown();
  const outageStarted = Date.now();
  await rig.bus.publish(makeEvent(EVENT_TYPES.bundleDecrypted, { taskId: 'import-vol-0b0d9e71', accountId: '111122223333' }, 'test'));
  // The first attempts fail on the refused connection while S3 is down.
  await stage.waitForOutput(/stage failed on this delivery/, 5000).catch(() => undefined);
  expect(stage.output()).toMatch(/stage failed on this delivery/);
  await new Promise((r) => setTimeout(r, Math.max(0, 5000 - (Date.now() - outageStarted))));
  await rig.s3.comeBack();

  const task = await rig.leftState('import-vol-0b0d9e71', 'bundle-decrypted', 40_000);
  expect([task?.state, task?.statusMessage]).toEqual(['disk-converted', 'Validating']);
  const image = task!.artifacts.image!;
  expect((await objectBytes(rig.s3.s3, image.bucket, image.key)).equals(content)).toBe(true);
});
