/**
 * Stage 4: check the converted disk: it must fit the requested volume, and we record whether it
 * carries an MBR or GPT partition table (guest inspection grows here).
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { EVENT_TYPES } from '../../events/types';
import { makeEvent } from '../../events/make-event';
import { detectPartitionTable } from '../../toolkit/inspect/partitions';
import { completeStep, taskStage } from '../task-step';
import { ClientError } from '../errors';

const GiB = 1024 ** 3;
/** Enough for the MBR, the GPT header and its first partition entries. */
const HEAD_BYTES = 34 * 512;

export const validateStage = taskStage({
  name: 'validate',
  consumes: EVENT_TYPES.diskConverted,
  expects: 'disk-converted',
  async work(task, { taskId, accountId, image }, ctx) {
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
    await completeStep(
      ctx, taskId, 'disk-converted', 'validated',
      (doc) => ({ artifacts: { ...doc.artifacts, validation }, progress: Math.max(doc.progress, 95) }),
      makeEvent(EVENT_TYPES.validated, { taskId, accountId }, 'validate'),
      'Registering',
    );
  },
});
