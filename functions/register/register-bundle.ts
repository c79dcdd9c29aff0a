/**
 * Register for a bundle (RegisterImage): the pending image recorded by the gateway becomes
 * available, with its bytes in the image store, their SHA-256 and the layout found by the decrypt
 * stage. An image deregistered while its task ran is not brought back: the task is cancelled
 * (which removes the bytes).
 */
import type { ImageRecord, TaskDocument } from '../../tasks/task';
import type { StageContext } from '../stage';
import { advanceToNext, cancelTask } from '../task-step';

const GiB = 1024 ** 3;

export async function registerBundle(task: TaskDocument, ctx: StageContext): Promise<void> {
  const bundle = task.request.bundle;
  const image = task.artifacts.image;
  if (!bundle || !image) throw new Error(`task ${task.id} reached register without a bundle registration or an image`);
  const record = await ctx.tasks.getResource(bundle.imageId);
  if (!record || record.kind !== 'image' || record.accountId !== task.accountId) {
    await cancelTask(ctx, task.id, `The image ${bundle.imageId} was deregistered before its bundle was unpacked`);
    return;
  }
  const available: ImageRecord = {
    ...record,
    state: 'available',
    image,
    sizeGiB: Math.max(1, Math.ceil(image.size / GiB)),
    ...(task.artifacts.layout ? { layout: task.artifacts.layout } : {}),
  };
  delete available.stateReason;
  await ctx.tasks.putResource(available);
  await advanceToNext(ctx, 'register', task.id, () => ({}), { resourceId: bundle.imageId });
}
