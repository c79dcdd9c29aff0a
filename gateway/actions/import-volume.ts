/** ImportVolume: records a conversion task that waits for the client's manifest and parts. */
import { makeEvent } from '../../events/make-event';
import { newImportVolumeTaskId } from '../../tasks/ids';
import { updateTask, transition } from '../../tasks/state-machine';
import { TaskExistsError } from '../../tasks/store';
import type { ImageFormat, ImportVolumeRequest, TaskDocument } from '../../tasks/task';
import { invalidValue } from '../errors';
import type { QueryParams } from '../query-request';
import type { ActionContext, ActionHandler } from './action';
import { conversionTaskXml } from './conversion-task-xml';
import { checkManifestUrl } from './manifest-url';

const FORMATS: readonly ImageFormat[] = ['RAW', 'VMDK', 'VHD'];
const GIB = 1024 ** 3;
/** The largest EBS volume, GiB. */
const MAX_VOLUME_GIB = 16384;
const MAX_DESCRIPTION_CHARS = 255;
export const PENDING_UPLOAD_MESSAGE = 'Pending import-image upload';

export const importVolume: ActionHandler<ImportVolumeRequest> = {
  async validate(params: QueryParams, ctx: ActionContext): Promise<ImportVolumeRequest> {
    const formatText = params.requiredString('Image.Format');
    const format = formatText.toUpperCase() as ImageFormat;
    if (!FORMATS.includes(format)) throw invalidValue('Image.Format', formatText, `It must be one of ${FORMATS.join(', ')}.`);

    const bytes = params.requiredPositiveInteger('Image.Bytes');
    const manifestUrl = params.requiredString('Image.ImportManifestUrl');
    checkManifestUrl('Image.ImportManifestUrl', manifestUrl, ctx.allowedObjectHosts);

    const volumeSizeGiB = params.requiredPositiveInteger('Volume.Size');
    if (volumeSizeGiB > MAX_VOLUME_GIB) {
      throw invalidValue('Volume.Size', String(volumeSizeGiB), `Volumes can be at most ${MAX_VOLUME_GIB} GiB.`);
    }
    // A raw image is the disk itself, so its size is known now; other formats are checked once converted.
    if (format === 'RAW' && bytes > volumeSizeGiB * GIB) {
      throw invalidValue(
        'Volume.Size',
        String(volumeSizeGiB),
        `The RAW image is ${bytes} bytes (Image.Bytes) but a ${volumeSizeGiB} GiB volume holds only ${volumeSizeGiB * GIB} bytes; ask for a Volume.Size of at least ${Math.ceil(bytes / GIB)} GiB.`,
      );
    }

    const description = params.string('Description');
    if (description !== undefined && description.length > MAX_DESCRIPTION_CHARS) {
      throw invalidValue('Description', `${description.slice(0, 20)}…`, `It can be at most ${MAX_DESCRIPTION_CHARS} characters.`);
    }
    const availabilityZone = params.string('AvailabilityZone') || `${ctx.region}a`;
    return { format, bytes, manifestUrl, volumeSizeGiB, availabilityZone, ...(description !== undefined ? { description } : {}) };
  },

  async run(request, ctx) {
    const task = await createTask(request, ctx);
    try {
      await ctx.publish(makeEvent('io.imaging.import.requested', { taskId: task.id, accountId: task.accountId }, 'gateway'));
    } catch (err) {
      // Without its event no stage would ever pick the task up: fail it now rather than let it hang.
      await updateTask(ctx.tasks, task.id, (doc) => transition(doc, 'failed', 'The import could not be started; submit it again', ctx.now())).catch(() => undefined);
      throw err;
    }
    return { conversionTask: conversionTaskXml(task) };
  },
};

async function createTask(request: ImportVolumeRequest, ctx: ActionContext): Promise<TaskDocument> {
  const now = ctx.now();
  const at = now.toISOString();
  for (let attempt = 0; ; attempt++) {
    const task: TaskDocument = {
      id: newImportVolumeTaskId(),
      kind: 'import-volume',
      accountId: ctx.caller.accountId,
      state: 'pending-upload',
      statusMessage: PENDING_UPLOAD_MESSAGE,
      progress: 0,
      bytesConverted: 0,
      request,
      artifacts: {},
      history: [{ at, from: null, to: 'pending-upload', message: PENDING_UPLOAD_MESSAGE }],
      createdAt: at,
      updatedAt: at,
      expiresAt: new Date(now.getTime() + ctx.taskLifetimeMs).toISOString(),
      version: 0,
    };
    try {
      await ctx.tasks.create(task);
      return task;
    } catch (err) {
      // 32 random bits: a collision is rare, and a second one in a row means something else is wrong.
      if (!(err instanceof TaskExistsError) || attempt >= 2) throw err;
    }
  }
}
