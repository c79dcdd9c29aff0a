/**
 * The hosted sparse extent header ("KDMV"), the 512-byte structure at the start of a
 * monolithicSparse or streamOptimized VMDK and, for streamOptimized, again in the footer.
 * Spec: VMware "Virtual Disk Format 5.0" (VMDK), section "Hosted Sparse Extent Header"
 * (https://www.vmware.com/app/vmdk/?src=vmdk).
 * All integers are little-endian; sector counts and offsets are in 512-byte sectors.
 */

export const SECTOR = 512;
export const HEADER_SIZE = 512;
export const VMDK_MAGIC = 0x564d444b; // 'KDMV' read as little-endian u32

/** gdOffset value meaning "the grain directory is at the end; read the footer". */
export const GD_AT_END = 0xffffffffffffffffn;

/** Header flags (spec: "flags"). */
export const FLAG_NEWLINE_TEST = 1 << 0;
export const FLAG_REDUNDANT_GT = 1 << 1;
export const FLAG_ZERO_GRAIN_GTE = 1 << 2;
export const FLAG_COMPRESSED = 1 << 16;
export const FLAG_MARKERS = 1 << 17;
export const KNOWN_FLAGS = FLAG_NEWLINE_TEST | FLAG_REDUNDANT_GT | FLAG_ZERO_GRAIN_GTE | FLAG_COMPRESSED | FLAG_MARKERS;

export const COMPRESSION_NONE = 0;
export const COMPRESSION_DEFLATE = 1;

/** Metadata marker types (streamOptimized), spec "Stream-Optimized Compressed Sparse Extents". */
export const MARKER_EOS = 0;
export const MARKER_GT = 1;
export const MARKER_GD = 2;
export const MARKER_FOOTER = 3;

/** A grain marker is LBA u64 + size u32, followed directly by the compressed data. */
export const GRAIN_MARKER_SIZE = 12;

type FieldType = 'u8' | 'u16' | 'u32' | 'u64';

/** The fields we read, where, and how wide; everything else in the 512 bytes is padding. */
export const SPARSE_HEADER_FIELDS = [
  { name: 'magicNumber', offset: 0, type: 'u32' },
  { name: 'version', offset: 4, type: 'u32' },
  { name: 'flags', offset: 8, type: 'u32' },
  { name: 'capacity', offset: 12, type: 'u64' }, // virtual size, sectors
  { name: 'grainSize', offset: 20, type: 'u64' }, // sectors per grain
  { name: 'descriptorOffset', offset: 28, type: 'u64' }, // sectors
  { name: 'descriptorSize', offset: 36, type: 'u64' }, // sectors
  { name: 'numGTEsPerGT', offset: 44, type: 'u32' },
  { name: 'rgdOffset', offset: 48, type: 'u64' }, // redundant grain directory, sectors
  { name: 'gdOffset', offset: 56, type: 'u64' }, // grain directory, sectors (or GD_AT_END)
  { name: 'overHead', offset: 64, type: 'u64' }, // sectors of metadata before the first grain
  { name: 'uncleanShutdown', offset: 72, type: 'u8' },
  { name: 'singleEndLineChar', offset: 73, type: 'u8' }, // '\n'
  { name: 'nonEndLineChar', offset: 74, type: 'u8' }, // ' '
  { name: 'doubleEndLineChar1', offset: 75, type: 'u8' }, // '\r'
  { name: 'doubleEndLineChar2', offset: 76, type: 'u8' }, // '\n'
  { name: 'compressAlgorithm', offset: 77, type: 'u16' },
] as const satisfies readonly { name: string; offset: number; type: FieldType }[];

type FieldName = (typeof SPARSE_HEADER_FIELDS)[number]['name'];
type FieldOf<N extends FieldName> = Extract<(typeof SPARSE_HEADER_FIELDS)[number], { name: N }>;

/**
 * u64 fields stay bigint: a hostile header can hold values no JavaScript number represents
 * exactly, and bounds must be checked before anything converts them.
 */
export type SparseHeader = { [N in FieldName]: FieldOf<N>['type'] extends 'u64' ? bigint : number };

export function parseSparseHeader(block: Buffer): SparseHeader {
  const header: Record<string, number | bigint> = {};
  for (const field of SPARSE_HEADER_FIELDS) {
    switch (field.type) {
      case 'u8': header[field.name] = block.readUInt8(field.offset); break;
      case 'u16': header[field.name] = block.readUInt16LE(field.offset); break;
      case 'u32': header[field.name] = block.readUInt32LE(field.offset); break;
      case 'u64': header[field.name] = block.readBigUInt64LE(field.offset); break;
    }
  }
  return header as SparseHeader;
}

export function encodeSparseHeader(header: SparseHeader): Buffer {
  const block = Buffer.alloc(HEADER_SIZE);
  for (const field of SPARSE_HEADER_FIELDS) {
    const value = header[field.name];
    switch (field.type) {
      case 'u8': block.writeUInt8(value as number, field.offset); break;
      case 'u16': block.writeUInt16LE(value as number, field.offset); break;
      case 'u32': block.writeUInt32LE(value as number, field.offset); break;
      case 'u64': block.writeBigUInt64LE(value as bigint, field.offset); break;
    }
  }
  return block;
}

/** A metadata marker: numSectors u64, size u32 (0 for metadata), type u32, padded to a sector. */
export interface MetadataMarker { numSectors: bigint; size: number; type: number }

export function parseMetadataMarker(block: Buffer): MetadataMarker {
  return { numSectors: block.readBigUInt64LE(0), size: block.readUInt32LE(8), type: block.readUInt32LE(12) };
}

export function encodeMetadataMarker(numSectors: number, type: number): Buffer {
  const block = Buffer.alloc(SECTOR);
  block.writeBigUInt64LE(BigInt(numSectors), 0);
  block.writeUInt32LE(0, 8);
  block.writeUInt32LE(type, 12);
  return block;
}
