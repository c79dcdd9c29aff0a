/**
 * `imaging import-instance FILE`: what euca-import-instance does. The disk is uploaded exactly
 * as `imaging import-volume` uploads it (parts, manifest, presigned URLs); then ImportInstance is
 * called with that one disk and the launch specification.
 */
import type { ClientContext } from '../client-options';
import { uploadImportImage, type ImportVolumeOptions } from './import-volume';

export interface ImportInstanceOptions extends ImportVolumeOptions {
  architecture?: string;
  instanceType?: string;
  /** Windows, or undefined for any other guest (EC2 has no other value). */
  platform?: string;
  /** The instance's description; `description` is the disk's. */
  instanceDescription?: string;
  groupNames?: string[];
  subnetId?: string;
  privateIpAddress?: string;
  shutdownBehavior?: string;
  /** Extension parameters: boot the converted disk under qemu (BootCheck), waiting for this line (BootCheckMarker). */
  bootCheck?: boolean;
  bootCheckMarker?: string;
  /** Extension parameters KernelId, RamdiskId, VirtualizationType and Layout of the boot disk. */
  kernelId?: string;
  ramdiskId?: string;
  virtualizationType?: string;
  layout?: string;
}

export interface ImportInstanceResult {
  conversionTaskId: string;
  instanceId: string;
  manifestUrl: string;
}

export async function importInstance(ctx: ClientContext, file: string, options: ImportInstanceOptions): Promise<ImportInstanceResult> {
  const uploaded = await uploadImportImage(ctx, file, options);
  const params: Record<string, string | number | undefined> = {
    Platform: options.platform,
    Description: options.instanceDescription,
    'LaunchSpecification.Architecture': options.architecture,
    'LaunchSpecification.InstanceType': options.instanceType,
    'LaunchSpecification.Placement.AvailabilityZone': options.availabilityZone,
    'LaunchSpecification.SubnetId': options.subnetId,
    'LaunchSpecification.PrivateIpAddress': options.privateIpAddress,
    'LaunchSpecification.InstanceInitiatedShutdownBehavior': options.shutdownBehavior,
    'DiskImage.1.Image.Format': options.format,
    'DiskImage.1.Image.Bytes': uploaded.size,
    'DiskImage.1.Image.ImportManifestUrl': uploaded.manifestUrl,
    'DiskImage.1.Volume.Size': uploaded.volumeSizeGiB,
    'DiskImage.1.Description': options.description,
    BootCheck: options.bootCheck || options.bootCheckMarker ? 'true' : undefined,
    BootCheckMarker: options.bootCheckMarker,
    KernelId: options.kernelId,
    RamdiskId: options.ramdiskId,
    VirtualizationType: options.virtualizationType,
    Layout: options.layout,
  };
  (options.groupNames ?? []).forEach((group, i) => (params[`LaunchSpecification.GroupName.${i + 1}`] = group));
  const response = await ctx.ec2.call('ImportInstance', params);
  const task = response.conversionTask ?? {};
  return { conversionTaskId: String(task.conversionTaskId), instanceId: String(task.importInstance?.instanceId), manifestUrl: uploaded.manifestUrl };
}
