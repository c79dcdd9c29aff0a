/**
 * Extension parameters of ImportImage and ImportInstance that say how the imported disk boots
 * (RegisterImage has the first three; EC2's ImportImage and ImportInstance have none of them, so
 * SDKs that check parameters against EC2's model cannot send them; our CLI and raw Query clients
 * can):
 *   KernelId=eki-…            the kernel a partition image boots with (a kernel image of the caller's)
 *   RamdiskId=eri-…           its ramdisk (a ramdisk image of the caller's); needs KernelId
 *   VirtualizationType=paravirtual|hvm   (default paravirtual with a kernel, else hvm)
 *   Layout=disk|partition     what the disk is: a whole disk (partition table, boot loader) or one
 *                             bare filesystem; the validate stage refuses a disk that is not what
 *                             was declared. Undeclared, the validate stage records what it finds.
 * The kernel and ramdisk are checked as RegisterImage checks them (image-checks.ts).
 */
import type { BootImageRequest } from '../../tasks/task';
import { Ec2Error, invalidValue } from '../errors';
import type { QueryParams } from '../query-request';
import type { ActionContext } from './action';
import { checkAssociation } from './image-checks';

export async function bootImageRequest(params: QueryParams, ctx: ActionContext): Promise<BootImageRequest> {
  const kernelId = params.string('KernelId') || undefined;
  const ramdiskId = params.string('RamdiskId') || undefined;
  const virtualization = params.string('VirtualizationType') || undefined;
  const layout = params.string('Layout') || undefined;
  if (virtualization !== undefined && virtualization !== 'paravirtual' && virtualization !== 'hvm') throw invalidValue('VirtualizationType', virtualization, 'It must be paravirtual or hvm.');
  if (layout !== undefined && layout !== 'disk' && layout !== 'partition') throw invalidValue('Layout', layout, 'It must be disk (a partition table) or partition (one bare filesystem).');
  if (ramdiskId && !kernelId) throw new Ec2Error('InvalidParameterCombination', 'A ramdisk is only used with a kernel: give KernelId as well');
  if (kernelId) await checkAssociation(ctx, 'KernelId', kernelId, 'kernel');
  if (ramdiskId) await checkAssociation(ctx, 'RamdiskId', ramdiskId, 'ramdisk');
  return {
    ...(kernelId ? { kernelId } : {}),
    ...(ramdiskId ? { ramdiskId } : {}),
    ...(virtualization ? { virtualizationType: virtualization as 'paravirtual' | 'hvm' } : {}),
    ...(layout ? { layout: layout as 'disk' | 'partition' } : {}),
  };
}
