/**
 * A blackholed S3 endpoint (accepts, never answers) at stage level (issue #10 item 3): a convert
 * stage process on a real nats-server whose S3 endpoint is a blackhole, with short S3 timeouts and
 * a short retry budget. The task is retried, then failed with a message naming the stage and the
 * cause, within the configured deadline (S3 timeouts × attempts + back-off); the replica is not
 * pinned: once the endpoint answers again, the same replica converts the next task.
 */
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { seededBytes } from '../helpers/disk-corpus';
import { startBlackholeProxy, type BlackholeProxy } from '../helpers/blackhole-proxy';
import type { RunningS3Server } from '../helpers/s3-server';
import { startStageRig, type StageRig } from '../helpers/stage-rig';
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

let rig: StageRig<RunningS3Server>;
let blackhole: BlackholeProxy;

beforeAll(async () => {
  rig = await startStageRig({ s3: 's3rver', name: 'blackhole' });
  blackhole = await startBlackholeProxy(rig.s3.endpoint);
});

afterAll(async () => {
  await rig?.stop();
  await blackhole?.stop();
});

async function decryptedTask(id: string, content: Buffer): Promise<void> {
  await createDecryptedTask(rig.s3.s3, rig.tasks, { id, content });
}

test('the task is retried, then failed naming the stage and the cause within the deadline; the replica takes the next task', async () => {
  const stage = await rig.startStage('convert', {
    IMAGING_S3_TIMEOUT_MS: String(S3_TIMEOUT_MS),
    IMAGING_S3_MAX_ATTEMPTS: String(S3_ATTEMPTS),
    IMAGING_MAX_DELIVER: String(MAX_DELIVER),
    IMAGING_RETRY_BACKOFF_MS: String(BACKOFF_MS),
  }, blackhole.endpoint);
  const content = seededBytes(2 * 2 ** 20 + 99, 31);
  await decryptedTask('import-vol-b1ac0001', content);
  const started = Date.now();
  await rig.bus.publish(makeEvent(EVENT_TYPES.bundleDecrypted, { taskId: 'import-vol-b1ac0001', accountId: '111122223333' }, 'test'));
  const failed = await rig.leftState('import-vol-b1ac0001', 'bundle-decrypted', DEADLINE_MS + 10_000);
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
  await rig.bus.publish(makeEvent(EVENT_TYPES.bundleDecrypted, { taskId: 'import-vol-b1ac0002', accountId: '111122223333' }, 'test'));
  const next = await rig.leftState('import-vol-b1ac0002', 'bundle-decrypted', 30_000);
  expect([next?.state, next?.statusMessage]).toEqual(['disk-converted', 'Validating']);
  expect((await objectBytes(rig.s3.s3, next!.artifacts.image!.bucket, next!.artifacts.image!.key)).equals(content)).toBe(true);
});
