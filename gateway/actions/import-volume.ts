/** ImportVolume: records a conversion task that waits for the client's manifest and parts. */
import { newImportVolumeTaskId } from '../../tasks/ids';
import type { ImportVolumeRequest } from '../../tasks/task';
import type { QueryParams } from '../query-request';
import type { ActionContext, ActionHandler } from './action';
import { conversionTaskXml } from './conversion-task-xml';
import { validateDiskImage } from './disk-image';
import { startImportTask } from './start-task';

export { PENDING_UPLOAD_MESSAGE } from './start-task';

export const importVolume: ActionHandler<ImportVolumeRequest> = {
  async validate(params: QueryParams, ctx: ActionContext): Promise<ImportVolumeRequest> {
    const disk = validateDiskImage(params, '', ctx.allowedObjectHosts, ctx.maxImageBytes);
    return { ...disk, availabilityZone: params.string('AvailabilityZone') || `${ctx.region}a` };
  },

  async run(request, ctx) {
    const task = await startImportTask('import-volume', newImportVolumeTaskId, request, ctx);
    return { conversionTask: conversionTaskXml(task) };
  },
};
