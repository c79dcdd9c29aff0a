/**
 * Stage 1: wait for the import manifest and every part it lists to be uploaded, then parse it.
 * Clients may call ImportVolume before uploading (euca2ools does), so the task waits in
 * "Pending import-image upload" until all parts answer HEAD, or until it expires.
 */
import type { StageContext } from '../stage';
import type { TaskDocument } from '../../tasks/task';
import { updateTask } from '../../tasks/state-machine';
import { holdsLease } from '../lease';
import { MAX_MANIFEST_BYTES, parseImportManifest, type ImportManifest } from '../../toolkit/bundle/import-manifest';
import { mapLimit } from '../../toolkit/map-limit';
import { assertAllowedUrl, fetchSmallObject, headObjectSize, objectUrlPolicy } from '../object-fetch';
import { cancelTask, advanceToNext, taskStage } from '../task-step';
import { ClientError } from '../errors';
import { rowOf } from '../../pipeline/table';
import { describeObjectSource } from './object-source';
import { verifyBundleManifest } from '../bundle/verify-manifest';

export const PENDING_UPLOAD_MESSAGE = rowOf('manifest').statusMessage;

type UploadCheck = { complete: true; manifest: ImportManifest } | { complete: false; waitingFor: string };

async function checkUpload(ctx: StageContext, task: TaskDocument): Promise<UploadCheck> {
  // The gateway accepted the manifest URL: its host is one the service stands behind.
  const allowed = objectUrlPolicy(ctx.config, [task.request.manifestUrl]);
  assertAllowedUrl(task.request.manifestUrl, allowed, 'import manifest');
  const fetched = await fetchSmallObject(task.request.manifestUrl, MAX_MANIFEST_BYTES);
  if (fetched.kind !== 'ok') return { complete: false, waitingFor: 'the import manifest' };
  const manifest = parseImportManifest(fetched.value);
  for (const part of manifest.parts) {
    assertAllowedUrl(part.headUrl, allowed, `part ${part.index} head`);
    assertAllowedUrl(part.getUrl, allowed, `part ${part.index} get`);
  }
  const heads = await mapLimit(manifest.parts, 16, (part) => headObjectSize(part.headUrl));
  const missing = heads.findIndex((h) => h.kind !== 'ok');
  if (missing >= 0) return { complete: false, waitingFor: `part ${missing} (${manifest.parts[missing].key})` };
  return { complete: true, manifest };
}

/** Longest wait between two checks of an upload that is still missing. */
const MAX_UPLOAD_POLL_MS = 60_000;

/**
 * The next check of a missing upload: soon at first, then spaced out (×1.5 a check) up to a
 * minute, or ten poll intervals when the poll interval is short, and never past expiry.
 */
function nextUploadCheckMs(pollMs: number, checks: number, remainingMs: number): number {
  const cap = Math.max(pollMs, Math.min(MAX_UPLOAD_POLL_MS, pollMs * 10));
  return Math.max(0, Math.min(pollMs * 1.5 ** Math.min(checks, 30), cap, remainingMs));
}

/**
 * The manifest once everything is uploaded. Otherwise the task is set to wake up later (the
 * sweeper publishes its event again then) and undefined is returned: waiting holds no worker.
 */
async function checkOrWait(ctx: StageContext, task: TaskDocument): Promise<ImportManifest | undefined> {
  const check = await checkUpload(ctx, task);
  if (check.complete) return check.manifest;
  const remaining = Date.parse(task.expiresAt) - Date.now();
  if (remaining <= 0) {
    await cancelTask(ctx, task.id, `ClientError: the upload was not complete when the task expired at ${task.expiresAt}; still missing ${check.waitingFor}`);
    return undefined;
  }
  const checks = (task.uploadChecks ?? 0) + 1;
  const wakeAt = new Date(Date.now() + nextUploadCheckMs(ctx.config.uploadPollMs, checks - 1, remaining)).toISOString();
  const attempt = ctx.attempt;
  await updateTask(ctx.tasks, task.id, (doc) => {
    if (doc.state !== 'pending-upload' || (attempt && !holdsLease(doc, attempt))) return undefined;
    return { ...doc, wakeAt, uploadChecks: checks, lease: undefined };
  });
  return undefined;
}

export const manifestStage = taskStage('manifest', {
  async work(task, { taskId }, ctx) {
    if (task.request.bundle) {
      // RegisterImage of a bundle: the manifest is there (the gateway read it); verify its signature.
      const bundle = await verifyBundleManifest(ctx, task);
      await advanceToNext(ctx, 'manifest', taskId, (doc) => ({ artifacts: { ...doc.artifacts, bundle } }));
      return;
    }
    if (task.request.importImage) {
      // ImportImage / ImportSnapshot: the disk is one object, there when the call is made.
      const described = await describeObjectSource(ctx, task);
      await advanceToNext(ctx, 'manifest', taskId, (doc) => ({ artifacts: { ...doc.artifacts, manifest: described }, request: { ...doc.request, bytes: described.size } }));
      return;
    }
    const manifest = await checkOrWait(ctx, task);
    if (!manifest) return;
    if (manifest.fileFormat !== task.request.format) {
      throw new ClientError(`the import manifest says the file format is ${manifest.fileFormat} but the request said ${task.request.format}`);
    }
    await advanceToNext(
      ctx, 'manifest', taskId,
      (doc) => ({ artifacts: { ...doc.artifacts, manifest } }),
    );
  },
});
