/**
 * Every safety check the qcow2 reader applies, by name (the shared vocabulary of
 * ../safety-checks.ts) and by the code its refusals carry. Where each runs: header.ts (magic,
 * version, truncation), layout.ts (the header's fields, before any table is read), reader.ts
 * (the L1 table at open), extent-map.ts (each L2 table as the block map reaches it).
 */
import { checkCodes, declareChecks } from '../safety-checks';

export const qcow2Checks = declareChecks('qcow2', {
  magic: { name: 'magic', code: 'qcow2.magic' },
  version: { name: 'version-supported', code: 'qcow2.version' },
  headerTruncated: { name: 'header-complete', code: 'qcow2.header-truncated' },
  headerLength: { name: 'header-fields-valid', code: 'qcow2.header-length' },
  headerExtensions: { name: 'metadata-inside-file', code: 'qcow2.header-extensions' },
  clusterBits: { name: 'block-size-valid', code: 'qcow2.cluster-bits' },
  virtualSize: { name: 'virtual-size-bounded', code: 'qcow2.virtual-size' },
  encryption: { name: 'no-encryption', code: 'qcow2.encryption' },
  backingFile: { name: 'no-backing-file', code: 'qcow2.backing-file' },
  externalDataFile: { name: 'no-external-files', code: 'qcow2.external-data-file' },
  dirty: { name: 'cleanly-closed', code: 'qcow2.dirty' },
  corrupt: { name: 'not-marked-corrupt', code: 'qcow2.corrupt' },
  compressionType: { name: 'compression-supported', code: 'qcow2.compression-type' },
  unknownIncompatibleFeatures: { name: 'known-features', code: 'qcow2.unknown-incompatible-features' },
  refcountOrder: { name: 'header-fields-valid', code: 'qcow2.refcount-order' },
  l1Size: { name: 'table-size-bounded', code: 'qcow2.l1-size' },
  l1TableOffset: { name: 'metadata-inside-file', code: 'qcow2.l1-table-offset' },
  l1Entry: { name: 'table-entries-valid', code: 'qcow2.l1-entry' },
  l2TableOffset: { name: 'metadata-inside-file', code: 'qcow2.l2-table-offset' },
  l2EntryReservedBits: { name: 'table-entries-valid', code: 'qcow2.l2-entry-reserved-bits' },
  l2EntryAlignment: { name: 'table-entries-valid', code: 'qcow2.l2-entry-alignment' },
  zeroFlagInV2: { name: 'table-entries-valid', code: 'qcow2.zero-flag-in-v2' },
  subclusterBitmap: { name: 'table-entries-valid', code: 'qcow2.subcluster-bitmap' },
  dataClusterPastEof: { name: 'data-inside-file', code: 'qcow2.data-cluster-past-eof' },
  compressedClusterPastEof: { name: 'data-inside-file', code: 'qcow2.compressed-cluster-past-eof' },
});

/** The codes, by check: what ImageFormatError.check holds when a qcow2 image is refused. */
export const QCOW2_CHECKS = checkCodes(qcow2Checks);

