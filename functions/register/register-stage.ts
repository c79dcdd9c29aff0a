/** Stage 5: create the volume record and complete the task. */
import { EVENT_TYPES } from '../../events/types';
import { makeEvent } from '../../events/make-event';
import { newVolumeId } from '../../tasks/ids';
import { updateTask } from '../../tasks/state-machine';
import { completeStep, taskStage } from '../task-step';

export const registerStage = taskStage({
  name: 'register',
  consumes: EVENT_TYPES.validated,
  expects: 'validated',
  async work(task, { taskId, accountId }, ctx) {
    const image = task.artifacts.image;
    if (!image) throw new Error(`task ${taskId} reached register without an image`);
    // The volume id is fixed on the task before the record is written, so a redelivery
    // after a crash reuses it instead of creating a second volume.
    const fixed = await updateTask(ctx.tasks, taskId, (doc) =>
      doc.artifacts.volumeId || doc.state !== 'validated' ? undefined : { ...doc, artifacts: { ...doc.artifacts, volumeId: newVolumeId() } });
    const volumeId = fixed?.artifacts.volumeId;
    if (!volumeId || fixed.state !== 'validated') return; // someone else finished or ended the task
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
  },
});
