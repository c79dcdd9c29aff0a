/**
 * Delivery guarantees of issue 10, on the in-process bus with the real convert, validate and
 * register stages (SQLite store, s3rver, two replicas of each stage):
 * - every event delivered twice and out of order (each publication is made twice, and every
 *   earlier event of the task is published again with it; the bus's duplicate window is off):
 *   each task completes exactly once (each state once in its history, one
 *   CreateMultipartUpload per task);
 * - a task whose next event was lost (advanced, never published) is re-driven by the sweeper
 *   once it has been idle for the configured time, and completes.
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import pino from 'pino';
import type { CloudEvent } from 'cloudevents';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument } from '../../tasks/task';
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { InProcessBus } from '../../events/in-process-bus';
import type { EventBus, Subscription } from '../../events/bus';
import { convertStage } from '../../functions/convert/convert-stage';
import { validateStage } from '../../functions/validate/validate-stage';
import { registerStage } from '../../functions/register/register-stage';
import { bootCheckStage } from '../../functions/boot-check/boot-check-stage';
import { runStageOnBus } from '../../functions/host/stage-runner';
import type { StageDeps } from '../../functions/host/deps';
import { startSweeper } from '../../functions/sweeper';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { testStageConfig } from '../helpers/stage-config';
import { waitUntil } from '../helpers/wait-until';
import { seededBytes } from '../helpers/disk-corpus';
import { createDecryptedTask } from '../helpers/decrypted-task';

const ACCOUNT = '111122223333';
let s3: RunningS3Server;
let tasks: SqliteTaskStore;
let deps: StageDeps;
/** CreateMultipartUpload calls, by key. */
const uploadsCreated: string[] = [];

beforeAll(async () => {
  s3 = await startS3Server();
  await s3.s3.send(new CreateBucketCommand({ Bucket: 'uploads' }));
  s3.s3.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'CreateMultipartUploadCommand') uploadsCreated.push((args.input as { Key: string }).Key);
      return next(args);
    },
    { step: 'initialize', name: 'recordCreateMultipartUpload' },
  );
  tasks = SqliteTaskStore.open(':memory:');
  deps = { tasks, s3: s3.s3, config: testStageConfig(s3, 'delivery-images', { leaseMs: 1500 }), log: pino({ level: 'silent' }) };
});

afterAll(async () => {
  await tasks.close();
  await s3.stop();
});

/** A task at bundle-decrypted with its source uploaded as one part. */
async function decryptedTask(id: string, seed: number): Promise<TaskDocument> {
  const content = seededBytes(6 * 2 ** 20 + seed, seed); // over one 5 MiB part: a multipart upload
  return createDecryptedTask(s3.s3, tasks, { id, content, accountId: ACCOUNT });
}

const decryptedEvent = (taskId: string) => makeEvent(EVENT_TYPES.bundleDecrypted, { taskId, accountId: ACCOUNT }, 'test', `${taskId}/bundle-decrypted`);

/** Runs two replicas of convert, validate and register on `bus`, publishing through `publishVia`. */
async function runStages(bus: EventBus): Promise<Subscription[]> {
  const subs: Subscription[] = [];
  for (const stage of [convertStage, validateStage, bootCheckStage, registerStage]) {
    for (let replica = 0; replica < 2; replica++) subs.push(await runStageOnBus(stage, deps, bus));
  }
  return subs;
}

test('every event delivered twice and out of order: each task completes exactly once', async () => {
  const inner = new InProcessBus({ duplicateWindowMs: 0, retryDelayMs: () => 50 });
  const seen = new Map<string, CloudEvent<unknown>[]>();
  // Each event goes out twice, and with it every earlier event of its task once more.
  const chaotic: EventBus = {
    publish: async (event) => {
      const taskId = (event.data as { taskId: string }).taskId;
      const earlier = seen.get(taskId) ?? [];
      seen.set(taskId, [...earlier, event]);
      await inner.publish(event);
      for (const old of earlier.slice().reverse()) await inner.publish(old);
      await inner.publish(event);
    },
    subscribe: (options, handler) => inner.subscribe(options, handler),
    close: () => inner.close(),
  };
  const subs = await runStages(chaotic);
  const ids = ['import-vol-d0b1e001', 'import-vol-d0b1e002', 'import-vol-d0b1e003'];
  try {
    for (const [i, id] of ids.entries()) await decryptedTask(id, 31 + i);
    for (const id of ids) await chaotic.publish(decryptedEvent(id));
    await waitUntil(async () => (await Promise.all(ids.map((id) => tasks.get(id)))).every((t) => t?.state === 'completed'), { what: 'every task completed', timeoutMs: 60_000, everyMs: 100 });
    // Let the duplicates still on the bus play out.
    await new Promise((r) => setTimeout(r, 3000));
    for (const id of ids) {
      const task = (await tasks.get(id))!;
      expect(task.state).toBe('completed');
      const states = task.history.map((h) => h.to);
      expect(states).toEqual(['bundle-decrypted', 'disk-converted', 'validated', 'boot-checked', 'completed']);
      expect(uploadsCreated.filter((key) => key.startsWith(`images/${id}/`))).toHaveLength(1);
    }
  } finally {
    for (const sub of subs) await sub.stop();
    await inner.close();
  }
}, 90_000);

test('a task whose next event was lost is re-driven by the sweeper after the idle time', async () => {
  const bus = new InProcessBus({ retryDelayMs: () => 50 });
  const id = 'import-vol-5eee0001';
  await decryptedTask(id, 41);
  // Convert runs and advances the task, but its event never reaches the bus (a crash, a NATS outage).
  const lost: CloudEvent<unknown>[] = [];
  await convertStage.handle(decryptedEvent(id), { ...deps, publish: async (e) => void lost.push(e), delivery: { attempt: 1, working: () => undefined } });
  expect(lost).toHaveLength(1);
  expect((await tasks.get(id))!.state).toBe('disk-converted');
  const subs = await runStages(bus);
  const idleMs = 2000;
  const sweeper = startSweeper(deps, (e) => bus.publish(e), { intervalMs: 200, idleMs });
  const started = Date.now();
  try {
    await new Promise((r) => setTimeout(r, idleMs / 2));
    expect((await tasks.get(id))!.state).toBe('disk-converted'); // not before the idle time
    await waitUntil(async () => (await tasks.get(id))?.state === 'completed', { what: 'the task to complete', timeoutMs: idleMs + 15_000, everyMs: 100 });
    expect(Date.now() - started).toBeLessThan(idleMs + 15_000);
  } finally {
    await sweeper.stop();
    for (const sub of subs) await sub.stop();
    await bus.close();
  }
}, 60_000);
