/**
 * Stage: dynamic validation. The converted disk is booted under qemu-system-x86_64 (see
 * toolkit/inspect/boot-check.ts: a copy-on-write overlay, no network, the serial console
 * captured, a time limit) and the verdict (how far it got, the last console lines) is kept on
 * the task as artifacts.bootCheck. A guest that does not get there fails the task with a
 * ClientError saying where it stopped.
 *
 * Off unless asked: with IMAGING_BOOT_CHECK=on-request (the default) only an image or instance
 * import sent with the extension parameter BootCheck=true is booted; `always` boots every image
 * and instance import; `off` none. Volumes and snapshots are data and are never booted. A task
 * not to be booted passes through at once. The stage is a row of its own so that operators can
 * give it its own nodes (KVM), replicas and limits.
 *
 * qemu reads a local file: the disk is copied from the image store into a scratch file first,
 * writing only its non-zero blocks (the file stays sparse), and removed afterwards.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { mkdtempSync, rmSync } from 'fs';
import { open } from 'fs/promises';
import { tmpdir } from 'os';
import { join } from 'path';
import type { Readable } from 'stream';
import { bootCheck } from '../../toolkit/inspect/boot-check';
import type { BootCheckResult, StoredObject, TaskDocument } from '../../tasks/task';
import { advanceToNext, failKeeping, taskStage } from '../task-step';
import type { BootCheckConfig, StageContext } from '../stage';
import { DEFAULT_BOOT_CHECK } from './boot-check-config';

const SYSTEM_KINDS: readonly string[] = ['import-image', 'import-instance'];
/** Console lines kept on the task. */
const KEEP_LINES = 20;
const ZERO_BLOCK = 64 * 1024;

/** Whether this task's disk is to be booted, by the operator's setting and the request. */
export function wantsBootCheck(task: TaskDocument, config: BootCheckConfig): boolean {
  if (!SYSTEM_KINDS.includes(task.kind) || config.mode === 'off') return false;
  return config.mode === 'always' || task.request.bootCheck !== undefined;
}

export const bootCheckStage = taskStage('boot-check', {
  async work(task, { taskId }, ctx) {
    const config = ctx.config.bootCheck ?? DEFAULT_BOOT_CHECK;
    if (!wantsBootCheck(task, config)) {
      if (task.request.bootCheck && config.mode === 'off') ctx.log.info({ taskId }, 'boot check requested but turned off by the operator (IMAGING_BOOT_CHECK=off)');
      await advanceToNext(ctx, 'boot-check', taskId, () => ({}));
      return;
    }
    const image = task.artifacts.image;
    if (!image) throw new Error(`task ${taskId} reached boot-check without an image`);
    const scratch = mkdtempSync(join(tmpdir(), 'imaging-boot-'));
    let result: BootCheckResult;
    try {
      const disk = join(scratch, 'disk.raw');
      await copyToSparseFile(ctx, image, disk);
      // taskStage keeps the delivery and the lease; a running guest is progress for the phase
      // deadline (the boot has its own time limit), and a lost lease stops the guest.
      const report = await bootCheck(disk, {
        timeoutMs: config.timeoutMs,
        accelerator: config.accelerator,
        memoryMiB: config.memoryMiB,
        keepLines: KEEP_LINES,
        ...(task.request.bootCheck?.marker ? { marker: task.request.bootCheck.marker } : {}),
        onTick: () => ctx.delivery.working(),
        ...(ctx.signal ? { signal: ctx.signal } : {}),
      });
      if (ctx.signal?.aborted) throw new Error(`task ${taskId}: the boot check was stopped (this attempt lost the task)`);
      // qemu that cannot start at all is this host's fault, not the image's: retried elsewhere.
      if (report.reached === 'none' && /^qemu could not start/.test(report.message)) throw new Error(report.message);
      result = { booted: report.booted, reached: report.reached, message: report.message, accelerator: report.accelerator, elapsedMs: report.elapsedMs, console: report.console };
      ctx.log.info({ taskId, booted: report.booted, reached: report.reached, elapsedMs: report.elapsedMs, accelerator: report.accelerator }, 'boot check done');
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
    if (!result.booted) {
      const message = `ClientError: the boot check failed: ${result.message} (the guest reached the ${result.reached === 'none' ? 'start' : result.reached} stage; its last console lines are kept on the task)`;
      await failKeeping(ctx, 'boot-check', taskId, message, { bootCheck: result });
      return;
    }
    await advanceToNext(ctx, 'boot-check', taskId, (doc) => ({ artifacts: { ...doc.artifacts, bootCheck: result } }));
  },
});

/** The image store's object into a local file, skipping zero blocks so the file stays sparse. */
async function copyToSparseFile(ctx: StageContext, image: StoredObject, path: string): Promise<void> {
  const out = await ctx.s3.send(new GetObjectCommand({ Bucket: image.bucket, Key: image.key }));
  const file = await open(path, 'w');
  try {
    let position = 0;
    for await (const chunk of out.Body as Readable) {
      const bytes = chunk as Buffer;
      for (let at = 0; at < bytes.length; at += ZERO_BLOCK) {
        const block = bytes.subarray(at, Math.min(at + ZERO_BLOCK, bytes.length));
        if (!isZero(block)) await file.write(block, 0, block.length, position + at);
      }
      position += bytes.length;
      ctx.delivery.working();
    }
    if (position !== image.size) throw new Error(`the image store returned ${position} bytes of ${image.bucket}/${image.key}, expected ${image.size}`);
    await file.truncate(position);
  } finally {
    await file.close();
  }
}

function isZero(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}
