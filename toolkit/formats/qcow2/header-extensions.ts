/**
 * qcow2 header extensions: typed, length-prefixed records between the end of the header and
 * the end of the first cluster (spec: "Header extensions"). The walk is bounded by the bytes
 * handed in (never more than the first cluster) and by a record count.
 */
import { refusal } from '../safety-checks';
import { qcow2Checks } from './checks';

export const HEADER_EXTENSION = {
  end: 0x00000000,
  backingFileFormat: 0xe2792aca,
  featureNameTable: 0x6803f857,
  bitmaps: 0x23852875,
  fullDiskEncryption: 0x0537be77,
  externalDataFile: 0x44415441,
} as const;

/** More records than this in one cluster is not an image any tool writes. */
const MAX_EXTENSIONS = 256;
const FEATURE_NAME_ENTRY_SIZE = 48;

export interface HeaderExtension {
  type: number;
  /** Offset of the extension data in the file. */
  offset: number;
  data: Buffer;
}

export type FeatureKind = 'incompatible' | 'compatible' | 'autoclear';

export interface Qcow2HeaderExtensions {
  extensions: HeaderExtension[];
  /** From the feature name table, when the image has one: "incompatible:5" → "some feature". */
  featureNames: Map<string, string>;
}

/**
 * Walks the extension records in `area`, which holds the file bytes from `areaOffset`
 * (the header length) to the end of the first cluster or of the file, whichever is first.
 */
export function readHeaderExtensions(area: Buffer, areaOffset: number): Qcow2HeaderExtensions {
  const extensions: HeaderExtension[] = [];
  const featureNames = new Map<string, string>();
  let at = 0;
  // An area too short for even the end marker is tolerated: qemu treats it as "no extensions".
  while (at + 8 <= area.length) {
    if (extensions.length >= MAX_EXTENSIONS) {
      throw refusal(qcow2Checks.headerExtensions, `qcow2 header has more than ${MAX_EXTENSIONS} header extensions`);
    }
    const type = area.readUInt32BE(at);
    const length = area.readUInt32BE(at + 4);
    if (type === HEADER_EXTENSION.end) break;
    const dataStart = at + 8;
    if (length > area.length - dataStart) {
      throw refusal(
        qcow2Checks.headerExtensions,
        `qcow2 header extension 0x${type.toString(16)} at offset ${areaOffset + at} claims ${length} bytes, beyond the first cluster`,
      );
    }
    const data = area.subarray(dataStart, dataStart + length);
    extensions.push({ type, offset: areaOffset + dataStart, data });
    if (type === HEADER_EXTENSION.featureNameTable) readFeatureNames(data, featureNames);
    // Records are padded to a multiple of 8 bytes.
    at = dataStart + Math.ceil(length / 8) * 8;
  }
  return { extensions, featureNames };
}

function readFeatureNames(data: Buffer, into: Map<string, string>): void {
  const kinds: FeatureKind[] = ['incompatible', 'compatible', 'autoclear'];
  for (let at = 0; at + FEATURE_NAME_ENTRY_SIZE <= data.length; at += FEATURE_NAME_ENTRY_SIZE) {
    const kind = kinds[data[at]];
    if (!kind) continue;
    into.set(`${kind}:${data[at + 1]}`, printable(data.subarray(at + 2, at + FEATURE_NAME_ENTRY_SIZE)));
  }
}

/**
 * Text from the image made safe to show in a message: NUL-terminated, printable ASCII only,
 * bounded length (the image is untrusted and the message ends up in logs and API responses).
 */
export function printable(bytes: Buffer, maxLength = 200): string {
  const end = bytes.indexOf(0);
  const text = bytes.subarray(0, end === -1 ? bytes.length : end).toString('latin1');
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > maxLength ? `${clean.slice(0, maxLength)}...` : clean;
}
