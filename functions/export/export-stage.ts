/**
 * The export stage: reads an imported volume's or image's raw disk from the image store (with
 * the service's key) and writes it, in one streaming pass, as the format the user asked for into
 * the user's bucket under `<S3Prefix><exportTaskId>.<ext>`, with the account's own key
 * (user-storage.ts): an export can only write where its account could write itself. Progress
 * goes into the task as it runs; a cancellation (or any failure) aborts the multipart upload,
 * and any upload of the key left behind is aborted too, so no partial object stays in the
 * user's bucket. A BundleInstance task is done here too, by bundle-instance.ts.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { ExportRequest } from '../../tasks/task';
import { convertImage, outputSizeBound } from '../../toolkit/convert/convert-image';
import type { DiskImageWriter } from '../../toolkit/formats/format';
import { S3MultipartSink } from '../../toolkit/io/s3-multipart-sink';
import { S3ObjectSource } from '../../toolkit/io/s3-object-source';
import { CountingSource } from '../../toolkit/io/counting-source';
import { rowOf } from '../../pipeline/table';
import { ClientError } from '../errors';
import { stillHolds } from '../lease';
import { TaskProgress } from '../progress';
import { advanceToNext, taskStage } from '../task-step';
import { abortUploadsOf, accountS3Client, checkWritableBucket } from './user-storage';
import { bundleInstanceWork } from './bundle-instance';
import { isMissingObject } from '../../toolkit/io/object-storage';

const MiB = 1024 ** 2;

/** The toolkit writer an export request asks for. */
export function exportWriterName(request: Pick<ExportRequest, 'diskImageFormat' | 'containerFormat' | 'vhdType'>): DiskImageWriter['name'] {
  if (request.containerFormat === 'ova') return 'ova';
  switch (request.diskImageFormat) {
    case 'VMDK':
      return 'vmdk';
    case 'VHD':
      return request.vhdType === 'fixed' ? 'vhd-fixed' : 'vhd';
    case 'RAW':
      return 'raw';
  }
}

export const exportStage = taskStage('export', {
  async work(task, { taskId }, ctx) {
    // BundleInstance: the same kind of work (an imported disk into the user's bucket), another output.
    if (task.request.bundleInstance) return bundleInstanceWork(task, taskId, ctx);
    const request = task.request.export;
    if (!request) throw new Error(`task ${taskId} reached export without an export request`);
    const source = new CountingSource(await openExportSource(ctx.s3, request));
    const userS3 = await accountS3Client(ctx, task.accountId);
    try {
      await checkWritableBucket(userS3, request.s3Bucket);
      // An earlier attempt that died or lost its lease mid-way left its upload open: nobody will finish it.
      if ((ctx.attempt?.epoch ?? ctx.delivery.attempt) > 1) await abortUploadsOf(userS3, request.s3Bucket, request.s3Key);
      const partSize = Math.max(5 * MiB, Math.min(16 * MiB, Math.floor(ctx.config.memoryLimitBytes / 32)));
      const output = exportWriterName(request);
      const sink = new S3MultipartSink(userS3, request.s3Bucket, request.s3Key, {
        partSize,
        queueSize: 4,
        expectedSize: output === 'raw' ? source.size : outputSizeBound(source.size),
      });
      const progress = new TaskProgress(ctx, taskId, rowOf('export').progress);
      let result;
      try {
        // convertImage aborts the sink (the multipart upload) on any failure, cancellation included.
        result = await convertImage({
          source,
          sink,
          output,
          claimedFormat: 'raw',
          maxVirtualSize: source.size,
          memoryLimitBytes: ctx.config.memoryLimitBytes,
          readConcurrency: ctx.config.readsInFlight,
          onProgress: (done, total) => progress.report(done, total),
          // Cancelled by the user, or the lease lost to a newer attempt (which writes the same key).
          signal: ctx.signal ? AbortSignal.any([progress.abort.signal, ctx.signal]) : progress.abort.signal,
        });
      } catch (err) {
        // An upload whose creation was under way when it was cut off may exist on the server
        // without the sink knowing its id: whatever upload the key has is this task's, unless a
        // newer attempt has taken the task over (the upload would then be that attempt's).
        if (await stillHolds(ctx, taskId)) await abortUploadsOf(userS3, request.s3Bucket, request.s3Key);
        throw err;
      }
      const exported = { bucket: request.s3Bucket, key: request.s3Key, size: result.bytesWritten };
      await progress.flush(source.size, source.size);
      ctx.recordTransfer?.({ bytesRead: source.bytesRead, bytesWritten: result.bytesWritten });
      await advanceToNext(ctx, 'export', taskId, (doc) => ({ artifacts: { ...doc.artifacts, exported }, bytesConverted: source.size }));
    } finally {
      userS3.destroy();
    }
  },
});

/** The raw disk in the image store; gone (its snapshot or volume deleted since) is the user's doing. */
async function openExportSource(s3: S3Client, request: ExportRequest): Promise<S3ObjectSource> {
  try {
    return await S3ObjectSource.open(s3, request.source.bucket, request.source.key);
  } catch (err) {
    if (isMissingObject(err)) {
      const what = 'imageId' in request ? `snapshot ${request.snapshotId} of image ${request.imageId}` : `volume ${request.volumeId} of instance ${request.instanceId}`;
      throw new ClientError(`the disk to export is gone: the ${what} was deleted`);
    }
    throw err;
  }
}
