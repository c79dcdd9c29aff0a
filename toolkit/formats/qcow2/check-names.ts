/**
 * Every safety check the qcow2 reader applies, by name. The name is the `check` of the
 * ImageFormatError that refuses an image, so logs and --json output say which rule fired.
 */
export const QCOW2_CHECKS = {
  magic: 'qcow2.magic',
  version: 'qcow2.version',
  headerTruncated: 'qcow2.header-truncated',
  headerLength: 'qcow2.header-length',
  headerExtensions: 'qcow2.header-extensions',
  clusterBits: 'qcow2.cluster-bits',
  virtualSize: 'qcow2.virtual-size',
  encryption: 'qcow2.encryption',
  backingFile: 'qcow2.backing-file',
  externalDataFile: 'qcow2.external-data-file',
  dirty: 'qcow2.dirty',
  corrupt: 'qcow2.corrupt',
  compressionType: 'qcow2.compression-type',
  unknownIncompatibleFeatures: 'qcow2.unknown-incompatible-features',
  refcountOrder: 'qcow2.refcount-order',
  l1Size: 'qcow2.l1-size',
  l1TableOffset: 'qcow2.l1-table-offset',
  l1Entry: 'qcow2.l1-entry',
  l2TableOffset: 'qcow2.l2-table-offset',
  l2EntryReservedBits: 'qcow2.l2-entry-reserved-bits',
  l2EntryAlignment: 'qcow2.l2-entry-alignment',
  zeroFlagInV2: 'qcow2.zero-flag-in-v2',
  subclusterBitmap: 'qcow2.subcluster-bitmap',
  dataClusterPastEof: 'qcow2.data-cluster-past-eof',
  compressedClusterPastEof: 'qcow2.compressed-cluster-past-eof',
} as const;

export type Qcow2CheckName = (typeof QCOW2_CHECKS)[keyof typeof QCOW2_CHECKS];
