/**
 * The VHD dynamic disk header ("Dynamic Disk Header Format"): 1024 big-endian bytes at the
 * footer's data_offset, locating the block allocation table (BAT) and giving the block size.
 * Spec: https://www.microsoft.com/en-us/download/details.aspx?id=23850
 */
import { decodeStruct, encodeStruct, type Decoded } from '../struct-layout';
import { vhdChecksum } from './vhd-footer';

export const VHD_DYNAMIC_HEADER_SIZE = 1024;
export const VHD_DYNAMIC_HEADER_COOKIE = 'cxsparse';
/** BAT entry of a block that is not allocated (reads as zeros on a non-differencing disk). */
export const VHD_BAT_UNALLOCATED = 0xffffffff;

export const VHD_DYNAMIC_HEADER_LAYOUT = {
  cookie: { offset: 0, type: 'ascii', size: 8 },
  /** Unused; all ones. */
  dataOffset: { offset: 8, type: 'u64' },
  tableOffset: { offset: 16, type: 'u64' },
  headerVersion: { offset: 24, type: 'u32' },
  maxTableEntries: { offset: 28, type: 'u32' },
  blockSize: { offset: 32, type: 'u32' },
  checksum: { offset: 36, type: 'u32' },
  parentUniqueId: { offset: 40, type: 'bytes', size: 16 },
  parentTimestamp: { offset: 56, type: 'u32' },
  // 60..64 reserved, 64..576 parent unicode name, 576..768 eight parent locator entries
} as const;

export type VhdDynamicHeader = Decoded<typeof VHD_DYNAMIC_HEADER_LAYOUT>;

export function decodeVhdDynamicHeader(buf: Buffer): VhdDynamicHeader {
  return decodeStruct(buf, VHD_DYNAMIC_HEADER_LAYOUT, 'be');
}

export function dynamicHeaderChecksumValid(buf: Buffer): boolean {
  return decodeVhdDynamicHeader(buf).checksum === vhdChecksum(buf, VHD_DYNAMIC_HEADER_LAYOUT.checksum.offset);
}

/** Each block is preceded by its sector bitmap: one bit per 512-byte sector, padded to a sector. */
export function sectorBitmapSize(blockSize: number): number {
  return Math.ceil(blockSize / 512 / 8 / 512) * 512;
}

export function encodeVhdDynamicHeader(h: { tableOffset: number; maxTableEntries: number; blockSize: number }): Buffer {
  const buf = Buffer.alloc(VHD_DYNAMIC_HEADER_SIZE);
  encodeStruct(buf, VHD_DYNAMIC_HEADER_LAYOUT, {
    cookie: VHD_DYNAMIC_HEADER_COOKIE,
    tableOffset: h.tableOffset,
    headerVersion: 0x00010000,
    maxTableEntries: h.maxTableEntries,
    blockSize: h.blockSize,
  }, 'be');
  buf.fill(0xff, VHD_DYNAMIC_HEADER_LAYOUT.dataOffset.offset, VHD_DYNAMIC_HEADER_LAYOUT.dataOffset.offset + 8);
  buf.writeUInt32BE(vhdChecksum(buf, VHD_DYNAMIC_HEADER_LAYOUT.checksum.offset), VHD_DYNAMIC_HEADER_LAYOUT.checksum.offset);
  return buf;
}
