/**
 * Leftovers of earlier attempts (issue 10, item 4), against moto_server, which lists and aborts
 * multipart uploads: a convert attempt after a killed one (epoch 2) writes under its own
 * attempt's key, aborts the predecessor's multipart upload and deletes its objects, the sink's
 * `*.zero-part-*` helper included; a task that fails leaves nothing under its prefix.
 */
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';

import { SqliteTaskStore } from '../../tasks/sqlite-store';
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { convertStage } from '../../functions/convert/convert-stage';
import type { StageContext } from '../../functions/stage';
import { describeWithMoto, startMotoServer, type RunningMotoServer } from '../helpers/moto-server';
import { seededBytes } from '../helpers/disk-corpus';
import { createDecryptedTask } from '../helpers/decrypted-task';
import { testStageConfig, testStageContext } from '../helpers/stage-config';

const BUCKET = 'attempt-images';
const ACCOUNT = '111122223333';

describeWithMoto('convert attempts clean up after their predecessors', () => {
  let s3: RunningMotoServer;
  let tasks: SqliteTaskStore;

  const context = (): StageContext => testStageContext(tasks, s3, testStageConfig(s3, BUCKET, { leaseMs: 5000 }));

  /** A task at bundle-decrypted whose last convert attempt (epoch 1) died: its lease has expired. */
  async function taskAfterKilledAttempt(id: string, content: Buffer, format: 'RAW' | 'VMDK' = 'RAW'): Promise<void> {
    await createDecryptedTask(s3.s3, tasks, {
      id, content, format, accountId: ACCOUNT,
      lease: { holder: 'dead-host/1/000000', stage: 'convert', epoch: 1, expiresAt: new Date(Date.now() - 1000).toISOString() },
    });
    // What the killed attempt left: an open multipart upload with a part in it, and a zero-part helper.
    const dead = `images/${id}/attempt-1/disk.raw`;
    const { UploadId } = await s3.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: dead }));
    await s3.s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: dead, UploadId, PartNumber: 1, Body: Buffer.alloc(5 * 2 ** 20, 1) }));
    await s3.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${dead}.zero-part-0123456789abcdef`, Body: Buffer.alloc(1024) }));
  }

  const uploadsUnder = async (prefix: string) =>
    ((await s3.s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: prefix }))).Uploads ?? []).map((u) => u.Key);
  const objectsUnder = async (prefix: string) =>
    ((await s3.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }))).Contents ?? []).map((o) => o.Key);

  beforeAll(async () => {
    s3 = await startMotoServer();
    await s3.s3.send(new CreateBucketCommand({ Bucket: 'uploads' }));
    await s3.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    tasks = SqliteTaskStore.open(':memory:');
  }, 90_000);

  afterAll(async () => {
    await tasks?.close();
    await s3?.stop();
  });

  test('the second attempt writes under attempt-2 and removes attempt 1\'s upload and objects', async () => {
    const id = 'import-vol-a77e0002';
    const content = seededBytes(3 * 2 ** 20 + 17, 21);
    await taskAfterKilledAttempt(id, content);
    expect(await uploadsUnder(`images/${id}/`)).toHaveLength(1);

    await convertStage.handle(makeEvent(EVENT_TYPES.bundleDecrypted, { taskId: id, accountId: ACCOUNT }, 'test'), context());

    const task = (await tasks.get(id))!;
    expect(task.state).toBe('disk-converted');
    expect(task.artifacts.image!.key).toBe(`images/${id}/attempt-2/disk.raw`);
    const stored = await s3.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: task.artifacts.image!.key }));
    expect(Buffer.from(await stored.Body!.transformToByteArray()).equals(content)).toBe(true);
    expect(await uploadsUnder(`images/${id}/`)).toEqual([]);
    expect(await objectsUnder(`images/${id}/`)).toEqual([`images/${id}/attempt-2/disk.raw`]);
  }, 60_000);

  test('a task that fails leaves nothing under its prefix', async () => {
    const id = 'import-vol-fa11ed02';
    await taskAfterKilledAttempt(id, seededBytes(2 ** 20, 22), 'VMDK'); // not a VMDK: a ClientError
    await convertStage.handle(makeEvent(EVENT_TYPES.bundleDecrypted, { taskId: id, accountId: ACCOUNT }, 'test'), context());
    const task = (await tasks.get(id))!;
    expect(task.state).toBe('failed');
    expect(await uploadsUnder(`images/${id}/`)).toEqual([]);
    expect(await objectsUnder(`images/${id}/`)).toEqual([]);
  }, 60_000);
});
