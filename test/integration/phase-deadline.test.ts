/**
 * A deadline per handler phase (issue #10 item 3): the decrypt stage HEADs a part on a
 * blackholed endpoint (a real TCP endpoint that accepts and never answers; the fetch's own
 * timeout is 30 s). With IMAGING_PHASE_DEADLINE_MS at 1 s the attempt is abandoned after about a
 * second with a ServerError naming the stage, the worker is free, and the task's lease is given
 * up so that a retry can claim it at once.
 */
import pino from 'pino';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument } from '../../tasks/task';
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { decryptStage } from '../../functions/decrypt/decrypt-stage';
import { invokeStage } from '../../functions/host/invoke-stage';
import { ServerError } from '../../functions/errors';
import { leaseIsLive } from '../../functions/lease';
import { startBlackholeProxy, type BlackholeProxy } from '../helpers/blackhole-proxy';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { testStageConfig } from '../helpers/stage-config';

let s3: RunningS3Server;
let blackhole: BlackholeProxy;
let tasks: SqliteTaskStore;

beforeAll(async () => {
  s3 = await startS3Server();
  blackhole = await startBlackholeProxy(s3.endpoint);
  tasks = SqliteTaskStore.open(':memory:');
});

afterAll(async () => {
  await tasks.close();
  await blackhole.stop();
  await s3.stop();
});

test('a phase silent past its deadline fails the attempt with a ServerError naming the stage, and frees the worker and the task', async () => {
  const partUrl = `${blackhole.endpoint}/uploads/part.0`;
  const now = new Date().toISOString();
  const task: TaskDocument = {
    id: 'import-vol-9a5ede01', kind: 'import-volume', accountId: '111122223333', state: 'manifest-received', statusMessage: 'Verifying uploaded parts', progress: 5, bytesConverted: 0,
    request: { format: 'RAW', bytes: 2 ** 20, manifestUrl: 'http://unused/', volumeSizeGiB: 1 },
    artifacts: { manifest: { version: '2010-11-15', fileFormat: 'RAW', size: 2 ** 20, volumeSizeGiB: 1, parts: [{ index: 0, start: 0, end: 2 ** 20 - 1, key: 'part.0', headUrl: partUrl, getUrl: partUrl }] } },
    history: [{ at: now, from: null, to: 'manifest-received' }], createdAt: now, updatedAt: now,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(), version: 0,
  };
  await tasks.create(task);
  const deps = {
    tasks,
    s3: s3.s3,
    config: testStageConfig(s3, 'deadline-images', { allowedObjectHosts: [new URL(blackhole.endpoint).host], phaseDeadlineMs: 1000 }),
    log: pino({ level: 'silent' }),
  };
  const started = Date.now();
  const outcome = await invokeStage(decryptStage, deps, async () => undefined, makeEvent(EVENT_TYPES.manifestReceived, { taskId: task.id, accountId: task.accountId }, 'test'), { attempt: 1, working: () => undefined })
    .then(() => undefined, (error: unknown) => error);
  const tookMs = Date.now() - started;
  expect(outcome).toBeInstanceOf(ServerError);
  expect((outcome as Error).message).toMatch(/^the decrypt stage made no progress for 1 s \(phase deadline 1000 ms\)/);
  expect(tookMs).toBeLessThan(5000);
  expect(blackhole.swallowed()).toBeGreaterThan(0);
  const after = await tasks.get(task.id);
  expect(after?.state).toBe('manifest-received');
  expect(leaseIsLive(after!)).toBe(false);
}, 15_000);
