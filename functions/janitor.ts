/**
 * The janitor: what a killed attempt leaves in the image store and no later attempt cleared
 * (the task was never retried, or its last attempt died too) is removed once it is older than a
 * configured age. Under the image store's task prefixes (images/<task>/) it aborts multipart
 * uploads and deletes objects that are older than the age, unless the task keeps the object as
 * its converted output or a live attempt (the lease holder's) owns it. Safe in several replicas
 * at once: aborting an upload another replica aborted first, or deleting a deleted object, is
 * harmless, and nothing a live attempt owns is touched.
 */
import { AbortMultipartUploadCommand, DeleteObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { TaskStore } from '../tasks/store';
import type { TaskDocument } from '../tasks/task';
import { leaseIsLive } from './lease';
import { runPeriodically } from './periodic-pass';
import type { Cleared } from './leftovers';
import type { Logger } from './stage';

/** The prefix under which every task's outputs live (task-step.ts imagePrefix is `${IMAGES}${taskId}/`). */
const IMAGES = 'images/';

export interface JanitorDeps {
  tasks: TaskStore;
  s3: S3Client;
  bucket: string;
  log: Logger;
}

export interface JanitorOptions {
  /** How often to look (default 10 min). */
  intervalMs: number;
  /** Leftovers younger than this are left alone (default 24 h). */
  ageMs: number;
}

export interface RunningJanitor {
  /** One pass now (tests, and the loop). */
  sweep(now?: number): Promise<Cleared>;
  stop(): Promise<void>;
}

function taskIdOf(key: string): string | undefined {
  if (!key.startsWith(IMAGES)) return undefined;
  const rest = key.slice(IMAGES.length);
  const slash = rest.indexOf('/');
  return slash > 0 ? rest.slice(0, slash) : undefined;
}

function ignorable(err: unknown): boolean {
  const e = err as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  // Already aborted or deleted by another replica; or a server that does not list uploads.
  return e?.name === 'NoSuchUpload' || e?.name === 'NoSuchKey' || e?.name === 'NotImplemented' || e?.$metadata?.httpStatusCode === 404 || e?.$metadata?.httpStatusCode === 501;
}

/** Whether `key` of `task` must stay: the task's converted output, or under the attempt holding a live lease. */
function owned(task: TaskDocument | undefined, key: string, kind: 'upload' | 'object', now: number): boolean {
  if (!task) {
    // A task we cannot find: its uploads and the sink's zero-part helpers are leftovers for
    // certain; a whole object may be someone's output, so it stays.
    return kind === 'object' && !/\.zero-part-[^/]*$/.test(key);
  }
  if (kind === 'object' && task.artifacts.image?.key === key) return true;
  if (task.lease && leaseIsLive(task, now) && key.startsWith(`${IMAGES}${task.id}/attempt-${task.lease.epoch}/`)) return true;
  return false;
}

export function startJanitor(deps: JanitorDeps, options: JanitorOptions): RunningJanitor {
  const { s3, bucket, log } = deps;

  async function sweep(now = Date.now()): Promise<Cleared> {
    const cleared: Cleared = { abortedUploads: 0, deletedObjects: 0 };
    const cutoff = now - options.ageMs;
    const tasks = new Map<string, TaskDocument | undefined>();
    const taskOf = async (key: string): Promise<TaskDocument | undefined | 'skip'> => {
      const id = taskIdOf(key);
      if (!id) return 'skip';
      if (!tasks.has(id)) tasks.set(id, await deps.tasks.get(id));
      return tasks.get(id);
    };

    try {
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      for (;;) {
        const page = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: IMAGES, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
        for (const upload of page.Uploads ?? []) {
          if (!upload.Key || !upload.UploadId || !upload.Initiated || upload.Initiated.getTime() > cutoff) continue;
          const task = await taskOf(upload.Key);
          if (task === 'skip' || owned(task, upload.Key, 'upload', now)) continue;
          try {
            await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }));
            cleared.abortedUploads++;
          } catch (err) {
            if (!ignorable(err)) throw err;
          }
        }
        if (!page.IsTruncated) break;
        keyMarker = page.NextKeyMarker;
        uploadIdMarker = page.NextUploadIdMarker;
      }
    } catch (err) {
      if (!ignorable(err) && (err as { name?: string })?.name !== 'NoSuchBucket') throw err;
    }

    try {
      let token: string | undefined;
      for (;;) {
        const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: IMAGES, ContinuationToken: token }));
        for (const object of page.Contents ?? []) {
          if (!object.Key || !object.LastModified || object.LastModified.getTime() > cutoff) continue;
          const task = await taskOf(object.Key);
          if (task === 'skip' || owned(task, object.Key, 'object', now)) continue;
          try {
            await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: object.Key }));
            cleared.deletedObjects++;
          } catch (err) {
            if (!ignorable(err)) throw err;
          }
        }
        if (!page.IsTruncated) break;
        token = page.NextContinuationToken;
      }
    } catch (err) {
      if ((err as { name?: string })?.name !== 'NoSuchBucket') throw err;
    }
    if (cleared.abortedUploads + cleared.deletedObjects > 0) log.info({ bucket, ...cleared }, 'janitor removed leftovers from the image store');
    return cleared;
  }

  const passes = runPeriodically(sweep, options.intervalMs, (err) => log.warn({ err: String(err) }, 'janitor pass failed; the next one tries again'));
  return { sweep, stop: passes.stop };
}
