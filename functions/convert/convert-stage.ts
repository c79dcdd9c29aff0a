/**
 * Stage 3: stream the source (the manifest's parts, read as one file) through the Imaging
 * Toolkit into one raw object in the image store. Nothing is held in memory beyond the
 * converter's bound and nothing touches local disk; progress and bytes converted go into the
 * task as it runs, and a cancellation stops the upload and removes what was written.
 */
import type { ImageFormat } from '../../tasks/task';
import { ConcatenatedSource } from '../../toolkit/io/concat-source';
import { ensureBucket } from '../../toolkit/io/object-storage';
import { HttpRangeSource } from '../../toolkit/io/http-range-source';
import { HashingSink } from '../../toolkit/io/hashing-sink';
import { CountingSource } from '../../toolkit/io/counting-source';
import { S3MultipartSink } from '../../toolkit/io/s3-multipart-sink';
import { convertImage } from '../../toolkit/convert/convert-image';
import { AccountStorageQuota } from './storage-quota';
import type { FormatName } from '../../toolkit/formats/format';
import { assertAllowedUrl, objectUrlPolicy } from '../object-fetch';
import { rowOf } from '../../pipeline/table';
import { TaskProgress } from '../progress';
import { advanceToNext, attemptPrefix, clearPredecessors, taskStage } from '../task-step';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const CLAIMED: Record<ImageFormat, FormatName> = { RAW: 'raw', VMDK: 'vmdk', VHD: 'vhd', VHDX: 'vhdx', QCOW2: 'qcow2', OVA: 'ova' };

export const convertStage = taskStage('convert', {
  async work(task, { taskId }, ctx) {
    const unbundled = task.request.bundle ? task.artifacts.image : undefined;
    if (unbundled?.sha256) {
      // A bundle's image is unpacked raw into the image store by the decrypt stage: nothing to convert.
      await advanceToNext(ctx, 'convert', taskId, (doc) => ({ bytesConverted: unbundled.size, artifacts: doc.artifacts }), { image: { ...unbundled, sha256: unbundled.sha256 } });
      return;
    }
    const described = task.artifacts.source;
    if (!described) throw new Error(`task ${taskId} reached convert without a described source`);
    // The manifest stage (or the service, presigning) accepted every part URL: a refusal now is
    // this stage's setting disagreeing with that one, the service's fault.
    const urls = objectUrlPolicy(ctx.config, described.parts.map((p) => p.getUrl));
    described.parts.forEach((p, i) => assertAllowedUrl(p.getUrl, urls, `part ${i} get`));
    const source = new CountingSource(new ConcatenatedSource(
      described.parts.map((p, i) => new HttpRangeSource(p.getUrl, p.size, `part ${i}`)),
      `the uploaded ${described.format} image`,
    ));
    const bucket = ctx.config.imageBucket;
    // Each attempt writes under its own key, after clearing what earlier attempts left.
    const key = `${attemptPrefix(taskId, ctx.attempt)}disk.raw`;
    await ensureBucket(ctx.s3, bucket);
    await clearPredecessors(ctx, taskId);
    // Parts held by the upload, (queue 4 + 1) × partSize, are a fixed share of the memory bound: 5/32 of it.
    const partSize = Math.max(5 * MiB, Math.min(16 * MiB, Math.floor(ctx.config.memoryLimitBytes / 32)));
    const quota = ctx.config.accountStorageQuotaBytes !== undefined ? new AccountStorageQuota(ctx.tasks, task, ctx.config.accountStorageQuotaBytes) : undefined;
    const hashing = new HashingSink(new S3MultipartSink(ctx.s3, bucket, key, { partSize, queueSize: 4, expectedSize: task.request.importImage ? undefined : task.request.volumeSizeGiB * GiB }));
    const sink = quota ? quota.watching(hashing) : hashing;
    const progress = new TaskProgress(ctx, taskId, rowOf('convert').progress);
    // Handed back on shutdown: the upload is aborted now, not when the converter next looks up
    // (it may be waiting for a slow part upload), so the clean-up fits in the drain deadline.
    const abortUpload = () => void sink.abort().catch(() => undefined);
    ctx.delivery.signal?.addEventListener('abort', abortUpload, { once: true });
    let result;
    const started = process.hrtime.bigint();
    try {
      result = await convertImage({
        source,
        sink,
        output: 'raw',
        claimedFormat: CLAIMED[described.format],
        maxVirtualSize: Math.min(task.request.volumeSizeGiB * GiB, ctx.config.maxImageBytes ?? Infinity),
        maxVirtualSizeSetting: ctx.config.maxImageBytes !== undefined && ctx.config.maxImageBytes < task.request.volumeSizeGiB * GiB ? 'IMAGING_MAX_IMAGE_BYTES' : undefined,
        memoryLimitBytes: ctx.config.memoryLimitBytes,
        readConcurrency: ctx.config.readsInFlight,
        onProgress: (done, total) => progress.report(done, total),
        signal: progress.abort.signal,
        // The raw output is as large as the virtual disk, however small the upload: refused before a byte is written.
        beforeConvert: quota ? (info) => quota.check(info.virtualSize, "the image's virtual disk is").then(() => undefined) : undefined,
      });
    } catch (err) {
      await sink.abort().catch(() => undefined);
      throw err;
    } finally {
      ctx.delivery.signal?.removeEventListener('abort', abortUpload);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    ctx.recordTransfer?.({ bytesRead: source.bytesRead, bytesWritten: result.bytesWritten, conversion: { format: described.format.toLowerCase(), virtualBytes: result.info.virtualSize, seconds } });
    const image = { bucket, key, size: result.bytesWritten, sha256: hashing.digestHex() };
    await progress.flush(result.bytesWritten, result.bytesWritten);
    await advanceToNext(
      ctx, 'convert', taskId,
      (doc) => ({ artifacts: { ...doc.artifacts, image }, bytesConverted: image.size }),
      { image },
    );
  },
});
