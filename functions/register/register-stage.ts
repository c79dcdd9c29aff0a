/** Stage 5: create the volume record and complete the task. */
import type { Stage } from '../stage';
import { EVENT_TYPES, type TaskEventData } from '../../events/types';
import { makeEvent } from '../../events/make-event';
import { newVolumeId } from '../../tasks/ids';
import { beginStep, completeStep, runStep } from '../task-step';

export const registerStage: Stage = {
  name: 'register',
  consumes: EVENT_TYPES.validated,
  async handle(event, ctx) {
    const { taskId, accountId } = event.data as TaskEventData;
    const task = await beginStep(ctx, taskId, 'validated', 'register');
    if (!task) return;
    await runStep(ctx, taskId, async () => {
      const image = task.artifacts.image;
      if (!image) throw new Error(`task ${taskId} reached register without an image`);
      // The volume id is fixed on the task before the record is written, so a redelivery
      // after a crash reuses it instead of creating a second volume.
      const volumeId = task.artifacts.volumeId ?? newVolumeId();
      await ctx.tasks.putResource({
        id: volumeId,
        kind: 'volume',
        accountId,
        taskId,
        sizeGiB: task.request.volumeSizeGiB,
        image,
        availabilityZone: task.request.availabilityZone,
        createdAt: new Date().toISOString(),
      });
      await completeStep(
        ctx, taskId, 'validated', 'completed',
        (doc) => ({ artifacts: { ...doc.artifacts, volumeId }, progress: 100 }),
        makeEvent(EVENT_TYPES.registered, { taskId, accountId, resourceId: volumeId }, 'register'),
        '',
      );
    });
  },
};
