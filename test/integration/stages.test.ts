/**
 * The stages' promises, tested on their own with real parts (SQLite store, s3rver, presigned
 * URLs): a redelivered event for a step already done changes nothing; a cancellation during a
 * conversion stops it and removes its output; a claimed format that is not the real one fails
 * the task with a ClientError.
 */
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { CloudEvent } from 'cloudevents';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument } from '../../tasks/task';
import { makeEvent } from '../../events/make-event';
import { RetryLater } from '../../events/bus';
import { EVENT_TYPES } from '../../events/types';
import { convertStage } from '../../functions/convert/convert-stage';
import { registerStage } from '../../functions/register/register-stage';
import type { StageContext } from '../../functions/stage';
import { updateTask } from '../../tasks/state-machine';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { seededBytes } from '../helpers/disk-corpus';
import { createDecryptedTask } from '../helpers/decrypted-task';
import { testStageConfig, testStageContext } from '../helpers/stage-config';

let s3: RunningS3Server;
let tasks: SqliteTaskStore;
const published: CloudEvent<unknown>[] = [];

function context(): StageContext {
  return testStageContext(tasks, s3, testStageConfig(s3, 'stage-images'), published);
}

/** A task that has reached `bundle-decrypted` with its source uploaded as parts. */
async function decryptedTask(id: string, content: Buffer, partSize: number, format: 'RAW' | 'VMDK' = 'RAW'): Promise<TaskDocument> {
  return createDecryptedTask(s3.s3, tasks, { id, content, partSize, format });
}

const convertEvent = (taskId: string) => makeEvent(EVENT_TYPES.bundleDecrypted, { taskId, accountId: '111122223333' }, 'test');

beforeAll(async () => {
  s3 = await startS3Server();
  await s3.s3.send(new CreateBucketCommand({ Bucket: 'uploads' }));
  tasks = SqliteTaskStore.open(':memory:');
});

afterAll(async () => {
  await tasks.close();
  await s3.stop();
});

test('convert writes the parts as one object; a redelivered event changes nothing but republishing the step\'s outcome under its id', async () => {
  const content = seededBytes(5 * 2 ** 20 + 333, 5);
  await decryptedTask('import-vol-00000001', content, 2 * 2 ** 20);
  const event = convertEvent('import-vol-00000001');
  await convertStage.handle(event, context());
  const after = (await tasks.get('import-vol-00000001'))!;
  expect(after.state).toBe('disk-converted');
  const image = after.artifacts.image!;
  const stored = await s3.s3.send(new GetObjectCommand({ Bucket: image.bucket, Key: image.key }));
  expect(Buffer.from(await stored.Body!.transformToByteArray()).equals(content)).toBe(true);
  const eventsBefore = published.length;
  await convertStage.handle(event, context()); // redelivery
  const again = (await tasks.get('import-vol-00000001'))!;
  expect(again.version).toBe(after.version);
  // The step is done: its outcome (the outbox event, maybe lost before) is published again
  // under the same id, which JetStream de-duplicates.
  const republished = published.slice(eventsBefore);
  expect(republished).toHaveLength(1);
  expect(republished[0].id).toBe(published[eventsBefore - 1].id);
  expect(republished[0].id).toBe('import-vol-00000001/disk-converted');
});

test('register creates one volume even when its event is delivered twice at once', async () => {
  const id = 'import-vol-00000002';
  const content = seededBytes(2 ** 20, 6);
  await decryptedTask(id, content, 2 ** 20);
  await convertStage.handle(convertEvent(id), context());
  await updateTask(tasks, id, (d) => ({ ...d, state: 'boot-checked' }));
  const event = makeEvent(EVENT_TYPES.bootChecked, { taskId: id, accountId: '111122223333' }, 'test');
  // The second delivery finds the task claimed: it is told to come back later (RetryLater)...
  const outcomes = await Promise.allSettled([registerStage.handle(event, context()), registerStage.handle(event, context())]);
  for (const outcome of outcomes) {
    if (outcome.status === 'rejected') expect(outcome.reason).toBeInstanceOf(RetryLater);
  }
  // ...and when it does, the step is done: nothing more is registered.
  await registerStage.handle(event, context());
  const done = (await tasks.get(id))!;
  expect(done.state).toBe('completed');
  const registered = published.filter((e) => e.type === EVENT_TYPES.registered && (e.data as any).taskId === id);
  expect(registered).toHaveLength(1);
  expect(await tasks.getResource(done.artifacts.volumeId!)).toMatchObject({ kind: 'volume', taskId: id });
});

test('a cancellation during the conversion stops it and leaves no output', async () => {
  const id = 'import-vol-00000003';
  const content = seededBytes(40 * 2 ** 20, 7);
  await decryptedTask(id, content, 10 * 2 ** 20);
  const ctx = context();
  // Ask for cancellation as soon as the conversion reports progress.
  let asked = false;
  const delivery = { attempt: 1, working: () => {
    if (!asked) {
      asked = true;
      void updateTask(tasks, id, (d) => ({ ...d, cancelRequested: { at: new Date().toISOString(), reason: 'stop it' } }));
    }
  } };
  await convertStage.handle(convertEvent(id), { ...ctx, delivery });
  const task = (await tasks.get(id))!;
  expect(task).toMatchObject({ state: 'cancelled', statusMessage: 'stop it' });
  // Nothing under the task's whole prefix: no attempt's output, no zero-part helper.
  const listed = await s3.s3.send(new ListObjectsV2Command({ Bucket: 'stage-images', Prefix: `images/${id}/` }));
  expect(listed.Contents ?? []).toEqual([]);
});

test('bytes that are not the claimed format fail the task with a ClientError', async () => {
  const id = 'import-vol-00000004';
  await decryptedTask(id, seededBytes(3 * 2 ** 20, 8), 2 ** 20, 'VMDK');
  await convertStage.handle(convertEvent(id), context());
  const task = (await tasks.get(id))!;
  expect(task.state).toBe('failed');
  expect(task.statusMessage).toMatch(/^ClientError: .*VMDK|^ClientError: .*vmdk/);
});
