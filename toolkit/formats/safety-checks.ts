/**
 * Named safety checks: one vocabulary for every format reader, in the style of oslo.utils'
 * format_inspector (each inspector declares its checks by name, and a refusal says which one
 * failed).
 *
 * A format declares its checks once, in its checks.ts: for each, the rule's name from the
 * vocabulary below and the code its refusals carry (ImageFormatError.check: what logs, --json
 * output and the CLI's "[check: …]" show, kept stable). The same rule has the same name in
 * every format, so "virtual-size-bounded" means one thing whether the image is a VMDK or a VHD.
 * A refusal's message names the format and the rule:
 *
 *   vmdk: check no-external-files failed: VMDK descriptor names the file "/etc/passwd"; …
 */
import { ImageFormatError } from '../errors';

/** Every rule a reader may apply, by name, with what it guarantees once it has passed. */
export const CHECK_VOCABULARY = {
  // Identity and structure of the headers
  magic: 'the structure starts with (or the file ends with) the signature of its format',
  'version-supported': 'the format version is one this reader implements',
  'header-complete': 'the header lies wholly inside the file',
  'header-fields-valid': 'header fields are within the ranges the specification allows',
  'header-checksum': "a header's checksum matches its bytes",
  'footer-checksum': "the footer's checksum matches its bytes",
  'table-checksum': "a table's checksum matches its bytes",
  'footer-present': 'metadata a format keeps at the end of the file is there and well formed',
  'copies-agree': 'redundant copies of a structure (header and footer, two headers) agree',
  'header-consistent': 'separate structures describing the same disk agree with each other',
  'known-features': 'no feature, flag or required item this reader does not know is in use',
  'subformat-accepted': 'the subformat (create type, disk type) is one the service accepts',
  'binary-transfer-intact': 'the file was not altered by a text-mode transfer',
  // What the image may depend on
  'no-backing-file': 'the disk is whole: not a delta, snapshot or differencing disk that needs a parent',
  'no-external-files': 'the image keeps all its data in itself and names no other file',
  'no-encryption': 'the image is not encrypted',
  'cleanly-closed': 'the image was closed cleanly (no dirty flag, no log to replay)',
  'not-marked-corrupt': 'the image is not marked corrupt by the tool that wrote it',
  'compression-supported': 'compressed data uses a codec this reader inflates',
  // Sizes
  'virtual-size-bounded': 'the declared virtual size is within the format limit and the configured limit',
  'virtual-size-aligned': 'the declared virtual size is a whole number of sectors',
  'block-size-valid': 'the allocation unit (cluster, grain, block) is a power of two within limits',
  'sector-size-valid': 'the declared sector sizes are ones the format defines',
  'table-size-bounded': 'a table declares no more entries than its limit (reads stay bounded)',
  'table-covers-disk': 'a table has enough entries to map the whole virtual disk',
  'descriptor-size-bounded': 'a text descriptor is small enough to read whole',
  'descriptor-grammar': 'a text descriptor follows the strict grammar this reader accepts',
  // Where things lie in the file
  'metadata-inside-file': 'headers, tables, logs and descriptors lie inside the file',
  'metadata-disjoint': 'metadata structures do not overlap each other',
  'data-inside-file': 'every stored cluster, grain or block lies inside the file',
  'data-disjoint': 'no two stored blocks, and no block and metadata, share bytes',
  'table-entries-valid': 'table entries have no reserved bits set, are aligned, and use defined states',
  'grain-marker-valid': 'a compressed grain\'s marker names its grain and a size within its bounds',
  'unambiguous-layout': 'the file has one reading only (no second header that another reader would follow)',
  // Packages
  'descriptor-present': 'a package holds exactly one descriptor',
  'package-complete': 'every file the descriptor names is in the package, with the size it declares',
  'manifest-valid': 'a package manifest follows its grammar',
  'manifest-digest': 'the digests a package manifest carries match the files',
  'disk-index-valid': 'the disk asked for exists in the package',
} as const;

export type CheckName = keyof typeof CHECK_VOCABULARY;

/** One declared check of one format. */
export interface SafetyCheck {
  readonly format: string;
  readonly name: CheckName;
  /** ImageFormatError.check of its refusals. */
  readonly code: string;
}

export type CheckTable<K extends string> = { readonly [key in K]: SafetyCheck };

/**
 * Declares a format's checks. A format that declares none, or gives two checks one code, is a
 * programming error and fails at load time (so a reader cannot quietly run without its checks).
 */
export function declareChecks<K extends string>(format: string, table: { readonly [key in K]: { name: CheckName; code: string } }): CheckTable<K> {
  const entries = Object.entries(table) as [K, { name: CheckName; code: string }][];
  if (entries.length === 0) throw new Error(`${format}: a format must declare its safety checks`);
  const codes = new Set<string>();
  const checks = {} as { [key in K]: SafetyCheck };
  for (const [key, { name, code }] of entries) {
    if (!(name in CHECK_VOCABULARY)) throw new Error(`${format}: check ${key} is named ${name}, which is not in the vocabulary`);
    if (codes.has(code)) throw new Error(`${format}: two checks carry the code ${code}`);
    codes.add(code);
    checks[key] = Object.freeze({ format, name, code });
  }
  return Object.freeze(checks);
}

/** The refusal of an image by `check`; `detail` says what is wrong and what the user can do. */
export function refusal(check: SafetyCheck, detail: string): ImageFormatError {
  return new ImageFormatError(check.code, `${check.format}: check ${check.name} failed: ${detail}`);
}

/** Throws the refusal of an image by `check`. */
export function refuse(check: SafetyCheck, detail: string): never {
  throw refusal(check, detail);
}

/** The codes of a table, by key: for callers and tests that match ImageFormatError.check. */
export function checkCodes<K extends string>(checks: CheckTable<K>): { readonly [key in K]: string } {
  const codes = {} as { [key in K]: string };
  for (const key of Object.keys(checks) as K[]) codes[key] = checks[key].code;
  return Object.freeze(codes);
}
