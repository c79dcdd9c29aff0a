/**
 * Every safety check the OVA reader applies, by name (the shared vocabulary of
 * ../safety-checks.ts) and by the code its refusals carry. Where each runs: ovf-descriptor.ts
 * (the descriptor's grammar and the files it names), manifest.ts, reader.ts (the package's
 * members and the disk chosen). The disk inside is then checked by the VMDK reader's own checks.
 */
import { declareChecks } from '../safety-checks';

export const ovaChecks = declareChecks('ova', {
  ovfCount: { name: 'descriptor-present', code: 'ova-ovf-count' },
  ovfSize: { name: 'descriptor-size-bounded', code: 'ova-ovf-size' },
  ovfDoctype: { name: 'descriptor-grammar', code: 'ova-ovf-doctype' },
  ovfXml: { name: 'descriptor-grammar', code: 'ova-ovf-xml' },
  ovfEnvelope: { name: 'descriptor-grammar', code: 'ova-ovf-envelope' },
  ovfFile: { name: 'descriptor-grammar', code: 'ova-ovf-file' },
  href: { name: 'no-external-files', code: 'ova-href' },
  fileCompression: { name: 'compression-supported', code: 'ova-file-compression' },
  fileChunked: { name: 'subformat-accepted', code: 'ova-file-chunked' },
  missingFile: { name: 'package-complete', code: 'ova-missing-file' },
  fileSize: { name: 'package-complete', code: 'ova-file-size' },
  noDisk: { name: 'package-complete', code: 'ova-no-disk' },
  manifest: { name: 'manifest-valid', code: 'ova-manifest' },
  manifestDigest: { name: 'manifest-digest', code: 'ova-manifest-digest' },
  diskIndex: { name: 'disk-index-valid', code: 'ova-disk-index' },
  diskFormat: { name: 'subformat-accepted', code: 'ova-disk-format' },
});
