/**
 * Stage 5: create the volume record (and for ImportInstance the stopped instance that owns it)
 * and complete the task.
 */
import { newVolumeId } from '../../tasks/ids';
import { updateTask } from '../../tasks/state-machine';
import { rowOf } from '../../pipeline/table';
import { advanceToNext, cancelTask, taskStage } from '../task-step';
import { registerImport } from './register-import';
import { instanceRecord, settleInstance } from './register-instance';
import { instanceTaskIdOf } from '../../tasks/instance-disks';
import { registerBundle } from './register-bundle';

/** The state register works on (its row of the pipeline table). */
const REGISTER_EXPECTS = rowOf('register').expects;

export const registerStage = taskStage('register', {
  async work(task, { taskId, accountId }, ctx) {
    if (task.request.importImage) return registerImport(task, ctx);
    if (task.request.bundle) return registerBundle(task, ctx);
    const image = task.artifacts.image;
    if (!image) throw new Error(`task ${taskId} reached register without an image`);
    if (task.kind === 'import-instance' && !task.request.instance) throw new Error(`import-instance task ${taskId} has no instance in its request`);
    // The volume id is fixed on the task before the record is written, so a redelivery
    // after a crash reuses it instead of creating a second volume. The instance id was fixed
    // when the request was accepted. Records are written with put (replace), so writing them
    // again on a redelivery changes nothing.
    const fixed = await updateTask(ctx.tasks, taskId, (doc) =>
      doc.artifacts.volumeId || doc.state !== REGISTER_EXPECTS ? undefined : { ...doc, artifacts: { ...doc.artifacts, volumeId: newVolumeId() } });
    const volumeId = fixed?.artifacts.volumeId;
    if (!volumeId || fixed.state !== REGISTER_EXPECTS) return; // someone else finished or ended the task
    // A disk of an instance asked to stop since the claim (another disk failed, or the user
    // cancelled the instance): no volume is made.
    if (fixed.cancelRequested && instanceTaskIdOf(fixed)) {
      await cancelTask(ctx, taskId);
      return;
    }
    const createdAt = new Date().toISOString();
    await ctx.tasks.putResource({
      id: volumeId,
      kind: 'volume',
      accountId,
      taskId,
      sizeGiB: task.request.volumeSizeGiB,
      image,
      availabilityZone: task.request.availabilityZone,
      createdAt,
    });
    // Ended while the record was written (an instance whose other disk failed is ended at once,
    // as it waits for its disks): whoever ended it may have looked for the record before it was
    // there, so it is removed here.
    const current = await ctx.tasks.get(taskId);
    if (!current || current.state === 'failed' || current.state === 'cancelled') {
      await ctx.tasks.deleteResource(volumeId);
      return;
    }
    const partOf = task.request.partOf;
    if (partOf) {
      // A further disk of an instance: its own task completes with its volume; the instance
      // task completes when all its disks have.
      await advanceToNext(ctx, 'register', taskId, (doc) => ({ artifacts: { ...doc.artifacts, volumeId } }), { resourceId: volumeId });
      await settleInstance(ctx, partOf.taskId, 'volume');
      return;
    }
    if (task.kind === 'import-instance' && task.request.instance?.volumeTaskIds?.length) {
      await settleInstance(ctx, taskId, 'instance');
      return;
    }
    const instance = instanceRecord(task, [volumeId], createdAt);
    if (instance) await ctx.tasks.putResource(instance);
    const resourceId = instance?.id ?? volumeId;
    await advanceToNext(
      ctx, 'register', taskId,
      (doc) => ({ artifacts: { ...doc.artifacts, volumeId } }),
      { resourceId },
    );
  },
});
