/**
 * Register for ImportImage / ImportSnapshot: the converted disk becomes a snapshot, and for
 * ImportImage an image whose root device is that snapshot. Ids are fixed on the task before the
 * records are written, so a redelivery writes the same records again instead of new ones.
 */
import { newImageId, newSnapshotId } from '../../tasks/ids';
import { updateTask } from '../../tasks/state-machine';
import type { ImageRecord, SnapshotRecord, TaskDocument } from '../../tasks/task';
import { rowOf } from '../../pipeline/table';
import { importedBootFacts, importedGuestFacts } from '../../tasks/guest-facts';
import { advanceToNext } from '../task-step';
import type { StageContext } from '../stage';

const GiB = 1024 ** 3;
/** The state register works on (its row of the pipeline table). */
const REGISTER_EXPECTS = rowOf('register').expects;

export async function registerImport(task: TaskDocument, ctx: StageContext): Promise<void> {
  const image = task.artifacts.image;
  const spec = task.request.importImage;
  if (!image || !spec) throw new Error(`task ${task.id} reached register without an image or its import request`);
  const wantsImage = task.kind === 'import-image';
  const fixed = await updateTask(ctx.tasks, task.id, (doc) => {
    if (doc.state !== REGISTER_EXPECTS || (doc.artifacts.snapshotId && (!wantsImage || doc.artifacts.imageId))) return undefined;
    return {
      ...doc,
      artifacts: {
        ...doc.artifacts,
        snapshotId: doc.artifacts.snapshotId ?? newSnapshotId(),
        ...(wantsImage ? { imageId: doc.artifacts.imageId ?? newImageId() } : {}),
      },
    };
  });
  if (!fixed || fixed.state !== REGISTER_EXPECTS || !fixed.artifacts.snapshotId) return; // finished or ended elsewhere
  const { snapshotId, imageId } = fixed.artifacts;
  const createdAt = new Date().toISOString();
  const sizeGiB = Math.max(1, Math.ceil(image.size / GiB));
  const tags = spec.resourceTags && spec.resourceTags.length ? spec.resourceTags : undefined;
  const snapshot: SnapshotRecord = {
    id: snapshotId,
    kind: 'snapshot',
    accountId: task.accountId,
    taskId: task.id,
    sizeGiB,
    image,
    ...(spec.diskDescription ?? spec.description ? { description: spec.diskDescription ?? spec.description } : {}),
    ...(tags ? { tags } : {}),
    createdAt,
  };
  await ctx.tasks.putResource(snapshot);
  if (wantsImage && imageId) {
    const facts = importedGuestFacts(task);
    const record: ImageRecord = {
      id: imageId,
      kind: 'image',
      accountId: task.accountId,
      taskId: task.id,
      name: task.id,
      ...(spec.description ? { description: spec.description } : {}),
      // What the request said, filled in from what the validate stage found on the disk.
      architecture: facts.architecture ?? 'x86_64',
      ...(facts.platform === 'Windows' ? { platform: 'Windows' as const } : {}),
      ...(facts.bootMode ? { bootMode: facts.bootMode } : {}),
      rootDeviceName: spec.deviceName ?? '/dev/sda1',
      snapshotIds: [snapshotId],
      sizeGiB,
      ...(tags ? { tags } : {}),
      createdAt,
      // The extension parameters KernelId, RamdiskId, VirtualizationType, and the layout found.
      ...importedBootFacts(task),
    };
    await ctx.tasks.putResource(record);
  }
  await advanceToNext(ctx, 'register', task.id, () => ({}), { resourceId: imageId ?? snapshotId });
}
