/**
 * Every safety check the VHDX reader applies, by name (the shared vocabulary of
 * ../safety-checks.ts) and by the code its refusals carry. Where each runs: layout.ts (the
 * headers, the region table, the metadata), block-table.ts (every BAT entry, at open).
 */
import { declareChecks } from '../safety-checks';

export const vhdxChecks = declareChecks('vhdx', {
  signature: { name: 'magic', code: 'vhdx-signature' },
  metadataSignature: { name: 'magic', code: 'vhdx-metadata-signature' },
  tooSmall: { name: 'header-complete', code: 'vhdx-too-small' },
  headerChecksum: { name: 'header-checksum', code: 'vhdx-header-checksum' },
  regionTableChecksum: { name: 'table-checksum', code: 'vhdx-region-table-checksum' },
  headerSequence: { name: 'copies-agree', code: 'vhdx-header-sequence' },
  logNotEmpty: { name: 'cleanly-closed', code: 'vhdx-log-not-empty' },
  regionUnknownRequired: { name: 'known-features', code: 'vhdx-region-unknown-required' },
  metadataUnknownRequired: { name: 'known-features', code: 'vhdx-metadata-unknown-required' },
  regionMissing: { name: 'header-fields-valid', code: 'vhdx-region-missing' },
  metadataMissing: { name: 'header-fields-valid', code: 'vhdx-metadata-missing' },
  differencing: { name: 'no-backing-file', code: 'vhdx-differencing' },
  virtualSizeLimit: { name: 'virtual-size-bounded', code: 'vhdx-virtual-size-limit' },
  virtualSize: { name: 'virtual-size-aligned', code: 'vhdx-virtual-size' },
  blockSize: { name: 'block-size-valid', code: 'vhdx-block-size' },
  sectorSize: { name: 'sector-size-valid', code: 'vhdx-sector-size' },
  regionTableEntries: { name: 'table-size-bounded', code: 'vhdx-region-table-entries' },
  metadataEntries: { name: 'table-size-bounded', code: 'vhdx-metadata-entries' },
  batTooSmall: { name: 'table-covers-disk', code: 'vhdx-bat-too-small' },
  logBounds: { name: 'metadata-inside-file', code: 'vhdx-log-bounds' },
  regionBounds: { name: 'metadata-inside-file', code: 'vhdx-region-bounds' },
  metadataBounds: { name: 'metadata-inside-file', code: 'vhdx-metadata-bounds' },
  regionOverlap: { name: 'metadata-disjoint', code: 'vhdx-region-overlap' },
  regionDuplicate: { name: 'table-entries-valid', code: 'vhdx-region-duplicate' },
  metadataDuplicate: { name: 'table-entries-valid', code: 'vhdx-metadata-duplicate' },
  blockState: { name: 'table-entries-valid', code: 'vhdx-block-state' },
  partiallyPresent: { name: 'no-backing-file', code: 'vhdx-partially-present' },
  blockBounds: { name: 'data-inside-file', code: 'vhdx-block-bounds' },
  blockOverlap: { name: 'data-disjoint', code: 'vhdx-block-overlap' },
});
