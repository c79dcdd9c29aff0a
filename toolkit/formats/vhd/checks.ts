/**
 * Every safety check the VHD reader applies, by name (the shared vocabulary of
 * ../safety-checks.ts) and by the code its refusals carry. Where each runs: layout.ts (the
 * footer, its copy, the dynamic header, the BAT's bounds), block-table.ts (every BAT entry).
 */
import { declareChecks } from '../safety-checks';

export const vhdChecks = declareChecks('vhd', {
  footerMissing: { name: 'magic', code: 'vhd-footer-missing' },
  dynamicHeaderCookie: { name: 'magic', code: 'vhd-dynamic-header-cookie' },
  footerChecksum: { name: 'footer-checksum', code: 'vhd-footer-checksum' },
  dynamicHeaderChecksum: { name: 'header-checksum', code: 'vhd-dynamic-header-checksum' },
  footerCopy: { name: 'copies-agree', code: 'vhd-footer-copy' },
  diskType: { name: 'subformat-accepted', code: 'vhd-disk-type' },
  differencing: { name: 'no-backing-file', code: 'vhd-differencing' },
  virtualSizeLimit: { name: 'virtual-size-bounded', code: 'vhd-virtual-size-limit' },
  blockSize: { name: 'block-size-valid', code: 'vhd-block-size' },
  batTooSmall: { name: 'table-covers-disk', code: 'vhd-bat-too-small' },
  batTooLarge: { name: 'table-size-bounded', code: 'vhd-bat-too-large' },
  dynamicHeaderBounds: { name: 'metadata-inside-file', code: 'vhd-dynamic-header-bounds' },
  batBounds: { name: 'metadata-inside-file', code: 'vhd-bat-bounds' },
  fixedTruncated: { name: 'data-inside-file', code: 'vhd-fixed-truncated' },
  blockBounds: { name: 'data-inside-file', code: 'vhd-block-bounds' },
  blockOverlap: { name: 'data-disjoint', code: 'vhd-block-overlap' },
  ambiguousFooterCopy: { name: 'unambiguous-layout', code: 'vhd-ambiguous-footer-copy' },
});
