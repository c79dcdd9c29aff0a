/**
 * The disk of an import, as ImportVolume (Image.*, Volume.Size, Description) and ImportInstance
 * (DiskImage.N.Image.*, DiskImage.N.Volume.Size, DiskImage.N.Description) both send it: one
 * validator, parameter names under a prefix, so every message names what the client sent.
 */
import type { ImageFormat, ImportVolumeRequest } from '../../tasks/task';
import { invalidValue } from '../errors';
import type { QueryParams } from '../query-request';
import { checkManifestUrl } from './manifest-url';

export const FORMATS: readonly ImageFormat[] = ['RAW', 'VMDK', 'VHD'];
const GIB = 1024 ** 3;
/** The largest EBS volume, GiB. */
export const MAX_VOLUME_GIB = 16384;
export const MAX_DESCRIPTION_CHARS = 255;

/** The disk fields of an import request; the availability zone is the caller's to add. */
export type DiskImageRequest = Omit<ImportVolumeRequest, 'availabilityZone'>;

/** `prefix` is '' for ImportVolume and 'DiskImage.N.' for ImportInstance. */
/** `maxImageBytes` (IMAGING_MAX_IMAGE_BYTES) bounds the disk a request may declare. */
export function validateDiskImage(params: QueryParams, prefix: string, allowedObjectHosts: string[], maxImageBytes?: number): DiskImageRequest {
  const name = (suffix: string) => `${prefix}${suffix}`;
  const formatText = params.requiredString(name('Image.Format'));
  const format = formatText.toUpperCase() as ImageFormat;
  if (!FORMATS.includes(format)) throw invalidValue(name('Image.Format'), formatText, `It must be one of ${FORMATS.join(', ')}.`);

  const bytes = params.requiredPositiveInteger(name('Image.Bytes'));
  const manifestUrl = params.requiredString(name('Image.ImportManifestUrl'));
  checkManifestUrl(name('Image.ImportManifestUrl'), manifestUrl, allowedObjectHosts);

  const volumeSizeGiB = params.requiredPositiveInteger(name('Volume.Size'));
  if (volumeSizeGiB > MAX_VOLUME_GIB) {
    throw invalidValue(name('Volume.Size'), String(volumeSizeGiB), `Volumes can be at most ${MAX_VOLUME_GIB} GiB.`);
  }
  if (maxImageBytes !== undefined) {
    const limit = `This service accepts disks of at most ${maxImageBytes} bytes (IMAGING_MAX_IMAGE_BYTES).`;
    if (bytes > maxImageBytes) throw invalidValue(name('Image.Bytes'), String(bytes), limit);
    if (volumeSizeGiB * GIB > maxImageBytes) throw invalidValue(name('Volume.Size'), String(volumeSizeGiB), `${limit} Ask for a ${name('Volume.Size')} of at most ${Math.floor(maxImageBytes / GIB)} GiB.`);
  }
  // A raw image is the disk itself, so its size is known now; other formats are checked once converted.
  if (format === 'RAW' && bytes > volumeSizeGiB * GIB) {
    throw invalidValue(
      name('Volume.Size'),
      String(volumeSizeGiB),
      `The RAW image is ${bytes} bytes (${name('Image.Bytes')}) but a ${volumeSizeGiB} GiB volume holds only ${volumeSizeGiB * GIB} bytes; ask for a ${name('Volume.Size')} of at least ${Math.ceil(bytes / GIB)} GiB.`,
    );
  }

  const description = optionalDescription(params, name('Description'));
  return { format, bytes, manifestUrl, volumeSizeGiB, ...(description !== undefined ? { description } : {}) };
}

export function optionalDescription(params: QueryParams, name: string): string | undefined {
  const description = params.string(name);
  if (description !== undefined && description.length > MAX_DESCRIPTION_CHARS) {
    throw invalidValue(name, `${description.slice(0, 20)}…`, `It can be at most ${MAX_DESCRIPTION_CHARS} characters.`);
  }
  return description;
}
