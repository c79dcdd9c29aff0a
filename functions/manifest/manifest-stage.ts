/**
 * Stage 1: wait for the import manifest and every part it lists to be uploaded, then parse it.
 * Clients may call ImportVolume before uploading (euca2ools does), so the task waits in
 * "Pending import-image upload" until all parts answer HEAD, or until it expires.
 */
import type { StageContext } from '../stage';
import type { TaskDocument } from '../../tasks/task';
import { isTerminal } from '../../tasks/state-machine';
import { MAX_MANIFEST_BYTES, parseImportManifest, type ImportManifest } from '../../toolkit/bundle/import-manifest';
import { mapLimit } from '../../toolkit/map-limit';
import { assertAllowedUrl, fetchSmallObject, headObjectSize } from '../object-fetch';
import { cancelTask, advanceToNext, taskStage } from '../task-step';
import { ClientError } from '../errors';
import { rowOf } from '../../pipeline/table';
import { describeObjectSource } from './object-source';
import { verifyBundleManifest } from '../bundle/verify-manifest';

export const PENDING_UPLOAD_MESSAGE = rowOf('manifest').statusMessage;

type UploadCheck = { complete: true; manifest: ImportManifest } | { complete: false; waitingFor: string };

async function checkUpload(ctx: StageContext, task: TaskDocument): Promise<UploadCheck> {
  const allowed = ctx.config.allowedObjectHosts;
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The manifest once everything is uploaded; undefined if the task ended while waiting. */
async function waitForUpload(ctx: StageContext, taskId: string): Promise<ImportManifest | undefined> {
  for (;;) {
    const task = await ctx.tasks.get(taskId);
    if (!task || isTerminal(task.state) || task.state !== 'pending-upload') return undefined;
    if (task.cancelRequested) {
      await cancelTask(ctx, taskId);
      return undefined;
    }
    const check = await checkUpload(ctx, task);
    if (check.complete) return check.manifest;
    const remaining = Date.parse(task.expiresAt) - Date.now();
    if (remaining <= 0) {
      await cancelTask(ctx, taskId, `ClientError: the upload was not complete when the task expired at ${task.expiresAt}; still missing ${check.waitingFor}`);
      return undefined;
    }
    ctx.delivery.working();
    await sleep(Math.min(ctx.config.uploadPollMs, remaining));
  }
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
    const manifest = await waitForUpload(ctx, taskId);
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
