/**
 * Every safety check the VMDK reader applies, by name (the shared vocabulary of
 * ../safety-checks.ts) and by the code its refusals carry. Where each runs: layout.ts (the
 * sparse header, the footer, the embedded descriptor), descriptor.ts (the descriptor's grammar
 * and what it may describe), grain-tables.ts (the grain directory and tables at open),
 * grain-marker.ts (each compressed grain's marker, when the engine has read its bytes).
 */
import { declareChecks } from '../safety-checks';

export const vmdkChecks = declareChecks('vmdk', {
  magic: { name: 'magic', code: 'vmdk-magic' },
  truncated: { name: 'header-complete', code: 'vmdk-truncated' },
  version: { name: 'version-supported', code: 'vmdk-version' },
  flags: { name: 'known-features', code: 'vmdk-flags' },
  lineEndingTest: { name: 'binary-transfer-intact', code: 'vmdk-line-ending-test' },
  compression: { name: 'compression-supported', code: 'vmdk-compression' },
  virtualSize: { name: 'virtual-size-bounded', code: 'vmdk-virtual-size' },
  grainSize: { name: 'block-size-valid', code: 'vmdk-grain-size' },
  gtEntries: { name: 'table-size-bounded', code: 'vmdk-gt-entries' },
  footer: { name: 'footer-present', code: 'vmdk-footer' },
  endOfStream: { name: 'footer-present', code: 'vmdk-end-of-stream' },
  footerMismatch: { name: 'copies-agree', code: 'vmdk-footer-mismatch' },
  descriptorMissing: { name: 'no-external-files', code: 'vmdk-descriptor-missing' },
  descriptorFile: { name: 'no-external-files', code: 'vmdk-descriptor-file' },
  extentFile: { name: 'no-external-files', code: 'vmdk-extent-file' },
  descriptorSize: { name: 'descriptor-size-bounded', code: 'vmdk-descriptor-size' },
  descriptorOffset: { name: 'metadata-inside-file', code: 'vmdk-descriptor-offset' },
  descriptorSyntax: { name: 'descriptor-grammar', code: 'vmdk-descriptor-syntax' },
  createType: { name: 'subformat-accepted', code: 'vmdk-create-type' },
  extentType: { name: 'subformat-accepted', code: 'vmdk-extent-type' },
  extentCount: { name: 'subformat-accepted', code: 'vmdk-extent-count' },
  extentAccess: { name: 'subformat-accepted', code: 'vmdk-extent-access' },
  parent: { name: 'no-backing-file', code: 'vmdk-parent' },
  extentSize: { name: 'header-consistent', code: 'vmdk-extent-size' },
  createTypeFlags: { name: 'header-consistent', code: 'vmdk-create-type-flags' },
  gdOffset: { name: 'metadata-inside-file', code: 'vmdk-gd-offset' },
  gtOffset: { name: 'metadata-inside-file', code: 'vmdk-gt-offset' },
  gtOverlap: { name: 'metadata-disjoint', code: 'vmdk-gt-overlap' },
  grainOffset: { name: 'data-inside-file', code: 'vmdk-grain-offset' },
  grainMarkerLba: { name: 'grain-marker-valid', code: 'vmdk-grain-marker-lba' },
  grainMarkerSize: { name: 'grain-marker-valid', code: 'vmdk-grain-marker-size' },
});
