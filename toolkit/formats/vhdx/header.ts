/**
 * On-disk structures of VHDX ([MS-VHDX] v1.0, little-endian throughout),
 * https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-vhdx/
 *
 *   0       file type identifier: 'vhdxfile' + creator (UTF-16, 512 bytes)
 *   64 KiB  header 1 (4 KiB, CRC-32C)          128 KiB  header 2
 *   192 KiB region table 1 (64 KiB, CRC-32C)   256 KiB  region table 2
 *   1 MiB.. log, BAT region, metadata region and payload blocks, located by the header and the
 *           region table, in 1 MiB units.
 */
import { type Decoded } from '../struct-layout';
import { guidBytes } from './vhdx-guid';

export const KiB = 1024;
export const MiB = 1024 * 1024;

export const VHDX_SIGNATURE = 'vhdxfile';
export const VHDX_HEADER_SECTION_SIZE = 1 * MiB;
export const VHDX_HEADER_OFFSETS = [64 * KiB, 128 * KiB] as const;
export const VHDX_HEADER_SIZE = 4 * KiB;
export const VHDX_REGION_TABLE_OFFSETS = [192 * KiB, 256 * KiB] as const;
export const VHDX_REGION_TABLE_SIZE = 64 * KiB;
export const VHDX_MAX_TABLE_ENTRIES = 2047;
export const VHDX_METADATA_TABLE_SIZE = 64 * KiB;
export const VHDX_MAX_VIRTUAL_SIZE = 64 * 1024 ** 4;

export const FILE_IDENTIFIER_LAYOUT = {
  signature: { offset: 0, type: 'ascii', size: 8 },
  creator: { offset: 8, type: 'bytes', size: 512 },
} as const;

export const HEADER_LAYOUT = {
  signature: { offset: 0, type: 'ascii', size: 4 }, // 'head'
  checksum: { offset: 4, type: 'u32' },
  sequenceNumber: { offset: 8, type: 'u64' },
  fileWriteGuid: { offset: 16, type: 'bytes', size: 16 },
  dataWriteGuid: { offset: 32, type: 'bytes', size: 16 },
  /** Non-zero when the log holds entries that must be replayed before the file is consistent. */
  logGuid: { offset: 48, type: 'bytes', size: 16 },
  logVersion: { offset: 64, type: 'u16' },
  version: { offset: 66, type: 'u16' },
  logLength: { offset: 68, type: 'u32' },
  logOffset: { offset: 72, type: 'u64' },
} as const;
export type VhdxHeader = Decoded<typeof HEADER_LAYOUT>;

export const REGION_TABLE_HEADER_LAYOUT = {
  signature: { offset: 0, type: 'ascii', size: 4 }, // 'regi'
  checksum: { offset: 4, type: 'u32' },
  entryCount: { offset: 8, type: 'u32' },
} as const;

export const REGION_TABLE_ENTRY_SIZE = 32;
export const REGION_TABLE_ENTRY_LAYOUT = {
  guid: { offset: 0, type: 'bytes', size: 16 },
  fileOffset: { offset: 16, type: 'u64' },
  length: { offset: 24, type: 'u32' },
  /** Bit 0: Required — a reader that does not know the region must refuse the file. */
  flags: { offset: 28, type: 'u32' },
} as const;
export type VhdxRegionEntry = Decoded<typeof REGION_TABLE_ENTRY_LAYOUT>;

export const METADATA_TABLE_HEADER_LAYOUT = {
  signature: { offset: 0, type: 'ascii', size: 8 }, // 'metadata'
  entryCount: { offset: 10, type: 'u16' },
} as const;

export const METADATA_ENTRY_SIZE = 32;
export const METADATA_ENTRY_LAYOUT = {
  itemId: { offset: 0, type: 'bytes', size: 16 },
  /** Relative to the start of the metadata region. */
  offset: { offset: 16, type: 'u32' },
  length: { offset: 20, type: 'u32' },
  /** Bit 0 IsUser, bit 1 IsVirtualDisk, bit 2 IsRequired. */
  flags: { offset: 24, type: 'u32' },
} as const;
export type VhdxMetadataEntry = Decoded<typeof METADATA_ENTRY_LAYOUT>;

export const FILE_PARAMETERS_LAYOUT = {
  blockSize: { offset: 0, type: 'u32' },
  /** Bit 0 LeaveBlocksAllocated (a "fixed" VHDX), bit 1 HasParent (differencing). */
  flags: { offset: 4, type: 'u32' },
} as const;

export const REGION = {
  bat: guidBytes('2DC27766-F623-4200-9D64-115E9BFD4A08'),
  metadata: guidBytes('8B7CA206-4790-4B9A-B8FE-575F050F886E'),
};

/** The metadata items a reader must understand, with the minimum length of each. */
export const METADATA_ITEM = {
  fileParameters: { guid: guidBytes('CAA16737-FA36-4D43-B3B6-33F0AA44E76B'), length: 8 },
  virtualDiskSize: { guid: guidBytes('2FA54224-CD1B-4876-B211-5DBED83BF4B8'), length: 8 },
  page83Data: { guid: guidBytes('BECA12AB-B2E6-4523-93EF-C309E000C746'), length: 16 },
  logicalSectorSize: { guid: guidBytes('8141BF1D-A96F-4709-BA47-F233A8FAAB5F'), length: 4 },
  physicalSectorSize: { guid: guidBytes('CDA348C7-445D-4471-9CC9-E9885251C556'), length: 4 },
} as const;
export const PARENT_LOCATOR_GUID = guidBytes('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C');

/** BAT entry: state in bits 0-2, file offset in MiB in bits 20-63. */
export const BAT_ENTRY_SIZE = 8;
export const PAYLOAD_STATE = {
  notPresent: 0,
  undefined: 1,
  zero: 2,
  unmapped: 3,
  /** An "unmapped" value used by drafts of the spec; qemu reads it as zeros too. */
  unmappedV095: 5,
  fullyPresent: 6,
  partiallyPresent: 7,
} as const;
/** Payload blocks per sector-bitmap block: 2^23 sectors' worth of bitmap per bitmap block. */
export function chunkRatio(logicalSectorSize: number, blockSize: number): number {
  return (2 ** 23 * logicalSectorSize) / blockSize;
}
