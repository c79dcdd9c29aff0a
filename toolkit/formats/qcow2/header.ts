/**
 * The qcow2 file header, read from a declarative field table.
 * Spec: qemu docs/interop/qcow2.rst ("Header" and "Additional fields"),
 * https://gitlab.com/qemu-project/qemu/-/blob/master/docs/interop/qcow2.rst
 *
 * Decoding refuses only what stops it (magic, version, truncation); whether the values are
 * acceptable is decided in layout.ts, by the checks declared in checks.ts.
 */
import { refusal } from '../safety-checks';
import { qcow2Checks } from './checks';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

/** Size of the version 2 header; version 3 headers declare their own length (>= 104). */
export const QCOW2_V2_HEADER_LENGTH = 72;
export const QCOW2_V3_MIN_HEADER_LENGTH = 104;

interface HeaderField {
  offset: number;
  size: 1 | 4 | 8;
  name: Qcow2HeaderFieldName;
  /** Version 3 fields are absent from version 2 headers and read as their default. */
  since: 2 | 3;
  /** Value when the field is absent (v2 header, or a v3 header_length that ends before it). */
  absent?: bigint;
}

export type Qcow2HeaderFieldName =
  | 'magic'
  | 'version'
  | 'backingFileOffset'
  | 'backingFileSize'
  | 'clusterBits'
  | 'size'
  | 'cryptMethod'
  | 'l1Size'
  | 'l1TableOffset'
  | 'refcountTableOffset'
  | 'refcountTableClusters'
  | 'nbSnapshots'
  | 'snapshotsOffset'
  | 'incompatibleFeatures'
  | 'compatibleFeatures'
  | 'autoclearFeatures'
  | 'refcountOrder'
  | 'headerLength'
  | 'compressionType';

/** Every header field the reader looks at: byte offset, width, name (big endian throughout). */
export const QCOW2_HEADER_FIELDS: readonly HeaderField[] = [
  { offset: 0, size: 4, name: 'magic', since: 2 },
  { offset: 4, size: 4, name: 'version', since: 2 },
  { offset: 8, size: 8, name: 'backingFileOffset', since: 2 },
  { offset: 16, size: 4, name: 'backingFileSize', since: 2 },
  { offset: 20, size: 4, name: 'clusterBits', since: 2 },
  { offset: 24, size: 8, name: 'size', since: 2 },
  { offset: 32, size: 4, name: 'cryptMethod', since: 2 },
  { offset: 36, size: 4, name: 'l1Size', since: 2 },
  { offset: 40, size: 8, name: 'l1TableOffset', since: 2 },
  { offset: 48, size: 8, name: 'refcountTableOffset', since: 2 },
  { offset: 56, size: 4, name: 'refcountTableClusters', since: 2 },
  { offset: 60, size: 4, name: 'nbSnapshots', since: 2 },
  { offset: 64, size: 8, name: 'snapshotsOffset', since: 2 },
  { offset: 72, size: 8, name: 'incompatibleFeatures', since: 3, absent: 0n },
  { offset: 80, size: 8, name: 'compatibleFeatures', since: 3, absent: 0n },
  { offset: 88, size: 8, name: 'autoclearFeatures', since: 3, absent: 0n },
  // Version 2 images always use 16-bit refcounts (order 4).
  { offset: 96, size: 4, name: 'refcountOrder', since: 3, absent: 4n },
  { offset: 100, size: 4, name: 'headerLength', since: 3, absent: BigInt(QCOW2_V2_HEADER_LENGTH) },
  // An "additional field": present only when header_length extends past it; absent means deflate.
  { offset: 104, size: 1, name: 'compressionType', since: 3, absent: 0n },
];

/** Incompatible feature bits (an implementation must refuse any it does not know). */
export const INCOMPATIBLE = {
  dirty: 0,
  corrupt: 1,
  externalDataFile: 2,
  compressionType: 3,
  extendedL2: 4,
} as const;
export const KNOWN_INCOMPATIBLE_MASK = 0b11111n;

/** Compatible feature bits (ignorable; shown in details). */
export const COMPATIBLE = { lazyRefcounts: 0 } as const;

export type Qcow2RawHeader = Record<Qcow2HeaderFieldName, bigint>;

/** Bytes needed to decode the fixed part of the header of either version. */
export const QCOW2_HEADER_READ_LENGTH = 112;

/**
 * Decodes the header fields from the first bytes of the file. `head` may be shorter than
 * QCOW2_HEADER_READ_LENGTH when the file is; a header that does not fit is refused.
 */
export function decodeQcow2Header(head: Buffer): Qcow2RawHeader {
  if (head.length < 8) {
    throw refusal(qcow2Checks.headerTruncated, `qcow2 header is truncated: the file has only ${head.length} bytes`);
  }
  if (head.readUInt32BE(0) !== QCOW2_MAGIC) {
    throw refusal(qcow2Checks.magic, 'the file does not start with the qcow2 magic "QFI\\xfb"');
  }
  const version = head.readUInt32BE(4);
  // Version is checked before any other field so a qcow v1 or future file gets a clear message.
  if (version !== 2 && version !== 3) {
    throw refusal(qcow2Checks.version, `qcow2 version ${version} is not supported (only versions 2 and 3)`);
  }
  const fixedLength = version === 2 ? QCOW2_V2_HEADER_LENGTH : QCOW2_V3_MIN_HEADER_LENGTH;
  if (head.length < fixedLength) {
    throw refusal(
      qcow2Checks.headerTruncated,
      `qcow2 header is truncated: version ${version} needs ${fixedLength} bytes, the file has ${head.length}`,
    );
  }
  const headerLength = version === 2 ? QCOW2_V2_HEADER_LENGTH : head.readUInt32BE(100);
  const fields = {} as Qcow2RawHeader;
  for (const field of QCOW2_HEADER_FIELDS) {
    const end = field.offset + field.size;
    // The fixed part of the header is always there; additional fields only within header_length.
    const present = field.since <= version && (end <= fixedLength || end <= Math.min(headerLength, head.length));
    fields[field.name] = present ? readField(head, field) : field.absent ?? 0n;
  }
  return fields;
}

function readField(head: Buffer, field: HeaderField): bigint {
  switch (field.size) {
    case 1:
      return BigInt(head.readUInt8(field.offset));
    case 4:
      return BigInt(head.readUInt32BE(field.offset));
    case 8:
      return head.readBigUInt64BE(field.offset);
  }
}

/** Names of the bits set in a feature bitmap, lowest first. */
export function setBits(bitmap: bigint): number[] {
  const bits: number[] = [];
  for (let bit = 0; bit < 64; bit++) if ((bitmap >> BigInt(bit)) & 1n) bits.push(bit);
  return bits;
}
