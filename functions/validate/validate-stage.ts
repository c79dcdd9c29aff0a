/**
 * Stage 4: check the converted disk: it must fit the requested volume, and we record whether it
 * carries an MBR or GPT partition table (guest inspection grows here).
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { detectPartitionTable } from '../../toolkit/inspect/partitions';
import { advanceToNext, taskStage } from '../task-step';
import { ClientError } from '../errors';

const GiB = 1024 ** 3;
/** Enough for the MBR, the GPT header and its first partition entries. */
const HEAD_BYTES = 34 * 512;

export const validateStage = taskStage('validate', {
  async work(task, { taskId, image }, ctx) {
    const volumeBytes = task.request.volumeSizeGiB * GiB;
    if (image.size > volumeBytes) {
      throw new ClientError(`the disk is ${image.size} bytes, larger than the requested volume of ${task.request.volumeSizeGiB} GiB`);
    }
    const length = Math.min(HEAD_BYTES, image.size);
    let head = Buffer.alloc(0);
    if (length > 0) {
      const res = await ctx.s3.send(new GetObjectCommand({ Bucket: image.bucket, Key: image.key, Range: `bytes=0-${length - 1}` }));
      head = Buffer.from(await res.Body!.transformToByteArray());
    }
    const table = detectPartitionTable(head);
    const validation = { sizeBytes: image.size, partitionTable: table.type };
    await advanceToNext(
      ctx, 'validate', taskId,
      (doc) => ({ artifacts: { ...doc.artifacts, validation } }),
    );
  },
});
