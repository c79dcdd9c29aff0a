import { randomBytes } from 'crypto';

/** EC2-style ids: a prefix and 8 (or 17) lowercase hex digits, e.g. import-vol-1a2b3c4d. */
export function newId(prefix: string, hexDigits = 8): string {
  return `${prefix}-${randomBytes(Math.ceil(hexDigits / 2)).toString('hex').slice(0, hexDigits)}`;
}

export const newImportVolumeTaskId = () => newId('import-vol');
export const newImportInstanceTaskId = () => newId('import-i');
export const newVolumeId = () => newId('vol', 17);
export const newInstanceId = () => newId('i', 17);
export const newImportImageTaskId = () => newId('import-ami', 17);
export const newImportSnapshotTaskId = () => newId('import-snap', 17);
export const newSnapshotId = () => newId('snap', 17);
export const newImageId = () => newId('ami', 17);
export const newExportInstanceTaskId = () => newId('export-i', 17);
export const newRegisterBundleTaskId = () => newId('bundle-reg', 17);
/** Images registered from bundles: emi- (machine), eki- (kernel), eri- (ramdisk), as Eucalyptus names them. */
export const BUNDLE_IMAGE_PREFIX = { machine: 'emi', kernel: 'eki', ramdisk: 'eri' } as const;
export const newBundleImageId = (type: keyof typeof BUNDLE_IMAGE_PREFIX) => newId(BUNDLE_IMAGE_PREFIX[type], 17);
export const newExportImageTaskId = () => newId('export-ami', 17);
/** BundleInstance tasks: bun- and 8 hex digits, as EC2 names them. */
export const newBundleTaskId = () => newId('bun');
