/**
 * The janitor (issue 10, item 4) against moto_server, which lists and aborts multipart uploads:
 * leftovers older than the configured age under images/<task>/ are aborted or deleted, the
 * task's converted output and a live attempt's work are kept, young objects are left for now,
 * and two janitors sweeping at once (two replicas) remove each leftover once, without error.
 */
import { CreateBucketCommand, CreateMultipartUploadCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import pino from 'pino';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument, TaskState } from '../../tasks/task';
import { startJanitor } from '../../functions/janitor';
import { describeWithMoto, startMotoServer, type RunningMotoServer } from '../helpers/moto-server';

const BUCKET = 'janitor-images';
const HOUR = 3600_000;

describeWithMoto('the janitor clears old leftovers under the task prefixes', () => {
  let s3: RunningMotoServer;
  let tasks: SqliteTaskStore;

  beforeAll(async () => {
    s3 = await startMotoServer();
    await s3.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    tasks = SqliteTaskStore.open(':memory:');
  }, 90_000);

  afterAll(async () => {
    await tasks?.close();
    await s3?.stop();
  });

  async function task(id: string, state: TaskState, extra: Partial<TaskDocument>): Promise<void> {
    const now = new Date().toISOString();
    await tasks.create({
      id, kind: 'import-volume', accountId: '111122223333', state, statusMessage: '', progress: 0, bytesConverted: 0,
      request: { format: 'RAW', bytes: 1, manifestUrl: 'http://unused/', volumeSizeGiB: 1 }, artifacts: {},
      history: [{ at: now, from: null, to: state }], createdAt: now, updatedAt: now, expiresAt: new Date(Date.now() + HOUR).toISOString(),
      version: 0, ...extra,
    } as TaskDocument);
  }
  async function openUpload(key: string): Promise<void> {
    const { UploadId } = await s3.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    await s3.s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: Buffer.alloc(5 * 2 ** 20, 7) }));
  }
  const put = (key: string) => s3.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: Buffer.alloc(1024, 1) }));
  const uploads = async () => ((await s3.s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }))).Uploads ?? []).map((u) => u.Key).sort();
  const objects = async () => ((await s3.s3.send(new ListObjectsV2Command({ Bucket: BUCKET }))).Contents ?? []).map((o) => o.Key).sort();

  test('old leftovers go, outputs and live attempts stay; young ones wait; two janitors at once remove each once', async () => {
    // Completed at attempt 2: attempt 1 (killed) left an upload, a partial object and a zero-part helper.
    await task('import-vol-d0e00001', 'completed', { artifacts: { image: { bucket: BUCKET, key: 'images/import-vol-d0e00001/attempt-2/disk.raw', size: 1024 } } });
    await put('images/import-vol-d0e00001/attempt-2/disk.raw');
    await openUpload('images/import-vol-d0e00001/attempt-1/disk.raw');
    await put('images/import-vol-d0e00001/attempt-1/disk.raw');
    await put('images/import-vol-d0e00001/attempt-1/disk.raw.zero-part-00aa');
    // Converting now at attempt 3 under a live lease: its upload stays; attempt 2's goes.
    await task('import-vol-b05e0002', 'bundle-decrypted', { lease: { holder: 'other/1/abc', stage: 'convert', epoch: 3, expiresAt: new Date(Date.now() + 10 * HOUR).toISOString() } });
    await openUpload('images/import-vol-b05e0002/attempt-3/disk.raw');
    await openUpload('images/import-vol-b05e0002/attempt-2/disk.raw');
    // No task record: its upload and zero-part helper go; a whole object may be an output and stays.
    await openUpload('images/import-vol-90ne0003/attempt-1/disk.raw');
    await put('images/import-vol-90ne0003/attempt-1/disk.raw.zero-part-00bb');
    await put('images/import-vol-90ne0003/attempt-1/disk.raw');
    // Outside the task prefixes: never the janitor's.
    await put('elsewhere/file');

    const log = pino({ level: 'silent' });
    const options = { intervalMs: HOUR, ageMs: HOUR };
    const one = startJanitor({ tasks, s3: s3.s3, bucket: BUCKET, log }, options);
    const two = startJanitor({ tasks, s3: s3.s3, bucket: BUCKET, log }, options);
    try {
      // Every object is younger than an hour: none is touched. (moto reports every multipart
      // upload as initiated on 2010-11-10, so to it they are all old: the three that no live
      // attempt owns go now, the live attempt's stays.)
      expect(await one.sweep()).toEqual({ abortedUploads: 3, deletedObjects: 0 });
      expect(await uploads()).toEqual(['images/import-vol-b05e0002/attempt-3/disk.raw']);
      expect(await objects()).toHaveLength(6);

      // Two hours on, both replicas sweep at once.
      const later = Date.now() + 2 * HOUR;
      const [a, b] = await Promise.all([one.sweep(later), two.sweep(later)]);
      expect(await uploads()).toEqual(['images/import-vol-b05e0002/attempt-3/disk.raw']);
      expect(await objects()).toEqual([
        'elsewhere/file',
        'images/import-vol-90ne0003/attempt-1/disk.raw',
        'images/import-vol-d0e00001/attempt-2/disk.raw',
      ]);
      expect(a.abortedUploads + b.abortedUploads).toBe(0);
      // Three leftovers, each deleted by one janitor or both (S3 answers a second delete with success).
      expect(a.deletedObjects + b.deletedObjects).toBeGreaterThanOrEqual(3);
      // Once the live attempt's lease is gone, its upload is a leftover too.
      await tasks.compareAndSet({ ...(await tasks.get('import-vol-b05e0002'))!, lease: undefined, version: 1 }, 0);
      expect(await one.sweep(later)).toEqual({ abortedUploads: 1, deletedObjects: 0 });
      expect(await uploads()).toEqual([]);
      // A further pass finds nothing.
      expect(await one.sweep(later)).toEqual({ abortedUploads: 0, deletedObjects: 0 });
    } finally {
      await one.stop();
      await two.stop();
    }
  }, 60_000);
});
