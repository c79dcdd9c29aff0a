/**
 * The export stage: reads an imported volume's raw image from the image store and writes it, in
 * one streaming pass, as the format the user asked for into the user's bucket under
 * `<S3Prefix><exportTaskId>.<ext>`. Progress goes into the task as it runs; a cancellation (or
 * any failure) aborts the multipart upload, so no partial object is left in the user's bucket.
 */
import { HeadBucketCommand } from '@aws-sdk/client-s3';
import type { ExportRequest } from '../../tasks/task';
import { convertImage, outputSizeBound } from '../../toolkit/convert/convert-image';
import type { DiskImageWriter } from '../../toolkit/formats/format';
import { S3MultipartSink } from '../../toolkit/io/s3-multipart-sink';
import { S3ObjectSource } from '../../toolkit/io/s3-object-source';
import { CountingSource } from '../../toolkit/io/counting-source';
import { rowOf } from '../../pipeline/table';
import { ClientError } from '../errors';
import { TaskProgress } from '../progress';
import { advanceToNext, taskStage } from '../task-step';

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
    const request = task.request.export;
    if (!request) throw new Error(`task ${taskId} reached export without an export request`);
    await checkBucket(ctx.s3, request.s3Bucket);
    const source = new CountingSource(await S3ObjectSource.open(ctx.s3, request.source.bucket, request.source.key));
    const partSize = Math.max(5 * MiB, Math.min(16 * MiB, Math.floor(ctx.config.memoryLimitBytes / 32)));
    const output = exportWriterName(request);
    const sink = new S3MultipartSink(ctx.s3, request.s3Bucket, request.s3Key, {
      partSize,
      queueSize: 4,
      expectedSize: output === 'raw' ? source.size : outputSizeBound(source.size),
    });
    const progress = new TaskProgress(ctx, taskId, rowOf('export').progress);
    // convertImage aborts the sink (the multipart upload) on any failure, cancellation included.
    const result = await convertImage({
      source,
      sink,
      output,
      claimedFormat: 'raw',
      maxVirtualSize: source.size,
      memoryLimitBytes: ctx.config.memoryLimitBytes,
      readConcurrency: ctx.config.readsInFlight,
      onProgress: (done, total) => progress.report(done, total),
      signal: progress.abort.signal,
    });
    ctx.recordTransfer?.({ bytesRead: source.bytesRead, bytesWritten: result.bytesWritten });
    const exported = { bucket: request.s3Bucket, key: request.s3Key, size: result.bytesWritten };
    await progress.flush(source.size, source.size);
    await advanceToNext(ctx, 'export', taskId, (doc) => ({ artifacts: { ...doc.artifacts, exported }, bytesConverted: source.size }));
  },
});

/** A bucket that is not there is the user's to fix: the task fails with that reason, no retry. */
async function checkBucket(s3: import('@aws-sdk/client-s3').S3Client, bucket: string): Promise<void> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (err) {
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404 || (err as Error).name === 'NotFound' || (err as Error).name === 'NoSuchBucket') {
      throw new ClientError(`the S3 bucket ${bucket} does not exist; create it (and allow the export to write to it) and export again`);
    }
    if (status === 403) throw new ClientError(`the export may not write to the S3 bucket ${bucket}; grant it write access and export again`);
    throw err;
  }
}
