/**
 * Decides whether a decoded qcow2 header describes an image we can read safely, and reduces it
 * to the few numbers the cluster walk needs. Every refusal names its check (checks.ts).
 */
import type { ReaderOptions } from '../format';
import { refusal } from '../safety-checks';
import { qcow2Checks } from './checks';
import {
  COMPATIBLE,
  INCOMPATIBLE,
  KNOWN_INCOMPATIBLE_MASK,
  QCOW2_MAGIC,
  QCOW2_V3_MIN_HEADER_LENGTH,
  setBits,
  type Qcow2RawHeader,
} from './header';
import { HEADER_EXTENSION, printable, readHeaderExtensions } from './header-extensions';

/** qemu's own limits: clusters of 512 bytes .. 2 MiB, an active L1 table of at most 32 MiB. */
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
export const MAX_L1_ENTRIES = (32 * 1024 * 1024) / 8;
const MAX_BACKING_FILE_NAME = 1023;
/** Extended L2 entries need clusters of at least 16 KiB (32 subclusters of at least 512 bytes). */
const MIN_EXTENDED_L2_CLUSTER_BITS = 14;
export const SUBCLUSTERS_PER_CLUSTER = 32;
const SECTOR = 512;

export interface Qcow2Layout {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  /** Bytes of the virtual disk (whole 512-byte sectors, as qemu presents it). */
  virtualSize: number;
  fileSize: number;
  l1TableOffset: number;
  /** L1 entries that map the virtual disk; later entries (VM state of snapshots) are not read. */
  l1EntriesUsed: number;
  extendedL2: boolean;
  /** Bytes per L2 entry: 8, or 16 with extended L2 (entry + subcluster bitmap). */
  l2EntrySize: 8 | 16;
  /** Entries per L2 table (an L2 table is one cluster). */
  l2Entries: number;
  subclusterSize: number;
  lazyRefcounts: boolean;
  snapshots: number;
  refcountBits: number;
}

/**
 * The checks needed before anything beyond the fixed header is read: the magic, and a cluster
 * size within limits (the first cluster is read next, so its size must be bounded first).
 */
export function checkQcow2Basics(raw: Qcow2RawHeader): { version: 2 | 3; clusterBits: number; clusterSize: number } {
  if (Number(raw.magic) !== QCOW2_MAGIC) {
    throw refusal(qcow2Checks.magic, 'the file does not start with the qcow2 magic "QFI\\xfb"');
  }
  const clusterBits = Number(raw.clusterBits);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw refusal(
      qcow2Checks.clusterBits,
      `qcow2 cluster_bits ${clusterBits} is outside ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS} (cluster sizes 512 bytes to 2 MiB)`,
    );
  }
  return { version: Number(raw.version) as 2 | 3, clusterBits, clusterSize: 2 ** clusterBits };
}

/**
 * `firstCluster` holds the file from offset 0 up to the end of the first cluster (or of the file
 * when it is shorter); header extensions and a backing file name must live there.
 */
export function checkQcow2Header(
  raw: Qcow2RawHeader,
  firstCluster: Buffer,
  fileSize: number,
  options: ReaderOptions,
): Qcow2Layout {
  const { version, clusterBits, clusterSize } = checkQcow2Basics(raw);

  const headerLength = Number(raw.headerLength);
  if (version === 3 && (headerLength < QCOW2_V3_MIN_HEADER_LENGTH || headerLength % 8 !== 0 || headerLength > clusterSize)) {
    throw refusal(
      qcow2Checks.headerLength,
      `qcow2 header_length ${headerLength} is invalid (must be a multiple of 8, at least ${QCOW2_V3_MIN_HEADER_LENGTH}, within the first cluster)`,
    );
  }
  if (headerLength > firstCluster.length) {
    throw refusal(qcow2Checks.headerTruncated, `qcow2 header is truncated: header_length is ${headerLength}, the file has ${fileSize} bytes`);
  }

  if (raw.cryptMethod !== 0n) {
    const method = raw.cryptMethod === 1n ? 'AES' : raw.cryptMethod === 2n ? 'LUKS' : `method ${raw.cryptMethod}`;
    throw refusal(qcow2Checks.encryption, `qcow2 image is encrypted (${method}); upload an unencrypted image`);
  }

  if (raw.backingFileOffset !== 0n) refuseBackingFile(raw, firstCluster);

  const { extensions, featureNames } = readHeaderExtensions(firstCluster.subarray(headerLength), headerLength);
  const dataFile = extensions.find((e) => e.type === HEADER_EXTENSION.externalDataFile);
  if (dataFile) {
    throw refusal(
      qcow2Checks.externalDataFile,
      `qcow2 image keeps its data in an external file "${printable(dataFile.data)}"; upload a self-contained image (qemu-img convert -O qcow2)`,
    );
  }
  if (extensions.some((e) => e.type === HEADER_EXTENSION.fullDiskEncryption)) {
    throw refusal(qcow2Checks.encryption, 'qcow2 image carries a disk encryption header; upload an unencrypted image');
  }

  checkIncompatibleFeatures(raw.incompatibleFeatures, featureNames);
  const extendedL2 = hasBit(raw.incompatibleFeatures, INCOMPATIBLE.extendedL2);
  if (extendedL2 && clusterBits < MIN_EXTENDED_L2_CLUSTER_BITS) {
    throw refusal(
      qcow2Checks.clusterBits,
      `qcow2 image with extended L2 entries has ${clusterSize}-byte clusters; at least 16 KiB are required`,
    );
  }
  checkCompressionType(raw);

  const refcountOrder = Number(raw.refcountOrder);
  if (refcountOrder > 6) {
    throw refusal(qcow2Checks.refcountOrder, `qcow2 refcount_order ${refcountOrder} is larger than 6`);
  }

  if (raw.size > BigInt(options.maxVirtualSize)) {
    throw refusal(
      qcow2Checks.virtualSize,
      `qcow2 virtual size ${raw.size} bytes is larger than the largest accepted disk (${options.maxVirtualSize} bytes)`,
    );
  }
  const declaredSize = Number(raw.size);
  // qemu presents whole sectors only; a trailing partial sector is not part of the disk.
  const virtualSize = declaredSize - (declaredSize % SECTOR);

  const l2EntrySize = extendedL2 ? 16 : 8;
  const l2Entries = clusterSize / l2EntrySize;
  const l1EntriesUsed = Math.ceil(declaredSize / (clusterSize * l2Entries));
  const l1TableOffset = checkL1Table(raw, l1EntriesUsed, clusterSize, fileSize);

  return {
    version,
    clusterBits,
    clusterSize,
    virtualSize,
    fileSize,
    l1TableOffset,
    l1EntriesUsed,
    extendedL2,
    l2EntrySize,
    l2Entries,
    subclusterSize: extendedL2 ? clusterSize / SUBCLUSTERS_PER_CLUSTER : clusterSize,
    lazyRefcounts: hasBit(raw.compatibleFeatures, COMPATIBLE.lazyRefcounts),
    snapshots: Number(raw.nbSnapshots),
    refcountBits: 2 ** refcountOrder,
  };
}

function hasBit(bitmap: bigint, bit: number): boolean {
  return ((bitmap >> BigInt(bit)) & 1n) === 1n;
}

/** The name goes into the message so the user sees which file the image depends on. */
function refuseBackingFile(raw: Qcow2RawHeader, firstCluster: Buffer): never {
  const offset = raw.backingFileOffset;
  const length = Number(raw.backingFileSize);
  const inside = offset + BigInt(length) <= BigInt(firstCluster.length) && length <= MAX_BACKING_FILE_NAME;
  const name = inside && length > 0 ? ` "${printable(firstCluster.subarray(Number(offset), Number(offset) + length))}"` : '';
  throw refusal(
    qcow2Checks.backingFile,
    `qcow2 image has a backing file${name}; upload a self-contained image (qemu-img convert -O qcow2 flattens it)`,
  );
}

function checkIncompatibleFeatures(features: bigint, featureNames: Map<string, string>): void {
  const unknown = features & ~KNOWN_INCOMPATIBLE_MASK;
  if (unknown !== 0n) {
    const named = setBits(unknown).map((bit) => {
      const name = featureNames.get(`incompatible:${bit}`);
      return name ? `${bit} (${name})` : String(bit);
    });
    throw refusal(
      qcow2Checks.unknownIncompatibleFeatures,
      `qcow2 image uses unknown incompatible feature bits ${named.join(', ')}; it cannot be read safely`,
    );
  }
  if (hasBit(features, INCOMPATIBLE.corrupt)) {
    throw refusal(
      qcow2Checks.corrupt,
      'qcow2 image is marked corrupt; repair it with `qemu-img check -r all` (or convert the data you trust) and upload it again',
    );
  }
  if (hasBit(features, INCOMPATIBLE.dirty)) {
    // qemu repairs dirty images on open by rebuilding refcounts; we do not write, so the user must.
    throw refusal(
      qcow2Checks.dirty,
      'qcow2 image is marked dirty (it was not closed cleanly); repair it with `qemu-img check -r all` and upload it again',
    );
  }
  if (hasBit(features, INCOMPATIBLE.externalDataFile)) {
    throw refusal(
      qcow2Checks.externalDataFile,
      'qcow2 image keeps its data in an external data file; upload a self-contained image (qemu-img convert -O qcow2)',
    );
  }
}

function checkCompressionType(raw: Qcow2RawHeader): void {
  const flagged = hasBit(raw.incompatibleFeatures, INCOMPATIBLE.compressionType);
  const type = raw.compressionType;
  if (type === 1n) {
    throw refusal(
      qcow2Checks.compressionType,
      'qcow2 zstd compression is not supported; convert with compression_type=zlib',
    );
  }
  if (type !== 0n) {
    throw refusal(qcow2Checks.compressionType, `qcow2 compression type ${type} is unknown`);
  }
  if (flagged) {
    // The bit promises a non-deflate type; with type 0 the header contradicts itself.
    throw refusal(
      qcow2Checks.compressionType,
      'qcow2 header sets the compression type feature bit but names deflate; the header is inconsistent',
    );
  }
}

function checkL1Table(raw: Qcow2RawHeader, l1EntriesUsed: number, clusterSize: number, fileSize: number): number {
  const l1Size = Number(raw.l1Size);
  if (l1Size > MAX_L1_ENTRIES) {
    throw refusal(qcow2Checks.l1Size, `qcow2 L1 table has ${l1Size} entries, more than the limit of ${MAX_L1_ENTRIES}`);
  }
  if (l1Size < l1EntriesUsed) {
    throw refusal(
      qcow2Checks.l1Size,
      `qcow2 L1 table has ${l1Size} entries, too few for the ${raw.size}-byte virtual disk (${l1EntriesUsed} needed)`,
    );
  }
  if (l1Size === 0) return 0;
  const offset = raw.l1TableOffset;
  if (offset === 0n || offset % BigInt(clusterSize) !== 0n || offset + BigInt(l1Size * 8) > BigInt(fileSize)) {
    throw refusal(
      qcow2Checks.l1TableOffset,
      `qcow2 L1 table (${l1Size} entries at offset ${offset}) is not cluster aligned or lies outside the ${fileSize}-byte file`,
    );
  }
  return Number(offset);
}
