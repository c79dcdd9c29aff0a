/**
 * The VHD hard disk footer (Virtual Hard Disk Image Format Specification, "Hard Disk Footer
 * Format"): 512 big-endian bytes at the end of every VHD, and copied to offset 0 of dynamic
 * and differencing disks. Old Virtual PC versions wrote only 511 bytes (the last reserved byte
 * missing); such footers are accepted and treated as if padded with one zero byte.
 * Spec: https://www.microsoft.com/en-us/download/details.aspx?id=23850
 */
import { decodeStruct, encodeStruct, type Decoded } from '../struct-layout';

export const VHD_FOOTER_SIZE = 512;
export const VHD_FOOTER_COOKIE = 'conectix';

export const VHD_FOOTER_LAYOUT = {
  cookie: { offset: 0, type: 'ascii', size: 8 },
  features: { offset: 8, type: 'u32' },
  formatVersion: { offset: 12, type: 'u32' },
  /** Offset of the dynamic disk header; all ones for fixed disks. */
  dataOffset: { offset: 16, type: 'u64' },
  /** Seconds since 2000-01-01 00:00:00 UTC. */
  timestamp: { offset: 24, type: 'u32' },
  creatorApplication: { offset: 28, type: 'bytes', size: 4 },
  creatorVersion: { offset: 32, type: 'u32' },
  creatorHostOs: { offset: 36, type: 'bytes', size: 4 },
  originalSize: { offset: 40, type: 'u64' },
  currentSize: { offset: 48, type: 'u64' },
  cylinders: { offset: 56, type: 'u16' },
  heads: { offset: 58, type: 'u8' },
  sectorsPerTrack: { offset: 59, type: 'u8' },
  diskType: { offset: 60, type: 'u32' },
  checksum: { offset: 64, type: 'u32' },
  uniqueId: { offset: 68, type: 'bytes', size: 16 },
  savedState: { offset: 84, type: 'u8' },
} as const;

export type VhdFooter = Decoded<typeof VHD_FOOTER_LAYOUT>;

export const VHD_DISK_TYPE = { fixed: 2, dynamic: 3, differencing: 4 } as const;

/** The CHS geometry limit of the footer; qemu treats a disk at this limit as "size from current_size". */
export const VHD_MAX_GEOMETRY_SECTORS = 65535 * 16 * 255;
/** Largest VHD qemu (and Hyper-V) accept: 2040 GiB. */
export const VHD_MAX_VIRTUAL_SIZE = 0xff000000 * 512;

/**
 * Creator applications whose VHDs are sized by `current_size` rather than by the CHS geometry
 * (qemu block/vpc.c keeps the same list): Hyper-V, qemu with force_size, Disk2vhd, XenConverter,
 * XenServer, Azure. Everything else (Virtual PC 'vpc ', plain 'qemu', ...) is sized by geometry.
 */
const CURRENT_SIZE_CREATORS = ['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0', 'wa\0\0'];

/** Ones' complement of the byte sum, with the checksum field itself counted as zero. */
export function vhdChecksum(buf: Buffer, checksumOffset: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) {
    if (i >= checksumOffset && i < checksumOffset + 4) continue;
    sum = (sum + buf[i]) >>> 0;
  }
  return ~sum >>> 0;
}

export function decodeVhdFooter(buf: Buffer): VhdFooter {
  return decodeStruct(buf, VHD_FOOTER_LAYOUT, 'be');
}

export function footerChecksumValid(buf: Buffer): boolean {
  return decodeVhdFooter(buf).checksum === vhdChecksum(buf, VHD_FOOTER_LAYOUT.checksum.offset);
}

export function creatorName(footer: VhdFooter): string {
  return footer.creatorApplication.toString('latin1');
}

/**
 * The virtual size exactly as qemu reports it: CHS geometry × 512, unless the creator is one of
 * the current_size producers or the geometry is at its maximum (where CHS would truncate the disk);
 * then current_size rounded down to whole sectors.
 */
export function vhdVirtualSize(footer: VhdFooter): number {
  const chsSectors = footer.cylinders * footer.heads * footer.sectorsPerTrack;
  const usesCurrentSize = CURRENT_SIZE_CREATORS.includes(creatorName(footer)) || chsSectors === VHD_MAX_GEOMETRY_SECTORS;
  return usesCurrentSize ? Math.floor(footer.currentSize / 512) * 512 : chsSectors * 512;
}

export interface ChsGeometry { cylinders: number; heads: number; sectorsPerTrack: number }

/** The geometry algorithm of the VHD specification (appendix "CHS Calculation"). */
export function vhdGeometry(totalSectors: number): ChsGeometry {
  const sectors = Math.min(totalSectors, VHD_MAX_GEOMETRY_SECTORS);
  let sectorsPerTrack: number;
  let heads: number;
  let cylTimesHeads: number;
  if (sectors >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylTimesHeads = Math.floor(sectors / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylTimesHeads = Math.floor(sectors / sectorsPerTrack);
    heads = Math.max(4, Math.floor((cylTimesHeads + 1023) / 1024));
    if (cylTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylTimesHeads = Math.floor(sectors / sectorsPerTrack);
    }
    if (cylTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylTimesHeads = Math.floor(sectors / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylTimesHeads / heads), heads, sectorsPerTrack };
}

/** Seconds since 2000-01-01T00:00:00Z, the VHD epoch. */
export function vhdTimestamp(date: Date): number {
  return Math.max(0, Math.floor((date.getTime() - Date.UTC(2000, 0, 1)) / 1000)) >>> 0;
}

export interface NewFooter {
  diskType: number;
  /** Offset of the dynamic header, or null for a fixed disk (written as all ones). */
  dataOffset: number | null;
  size: number;
  uniqueId: Buffer;
  timestamp: number;
}

/**
 * A footer as our writers produce it. Creator application 'win ' (Hyper-V's) makes every
 * reader, qemu included, take the disk size from current_size, so sizes that are not a whole
 * CHS geometry survive a round trip unchanged.
 */
export function encodeVhdFooter(f: NewFooter): Buffer {
  const buf = Buffer.alloc(VHD_FOOTER_SIZE);
  const geometry = vhdGeometry(f.size / 512);
  encodeStruct(buf, VHD_FOOTER_LAYOUT, {
    cookie: VHD_FOOTER_COOKIE,
    features: 0x2, // "reserved" bit the spec says must always be set
    formatVersion: 0x00010000,
    dataOffset: f.dataOffset ?? 0,
    timestamp: f.timestamp,
    creatorApplication: Buffer.from('win ', 'latin1'),
    creatorVersion: 0x000a0000,
    creatorHostOs: Buffer.from('Wi2k', 'latin1'),
    originalSize: f.size,
    currentSize: f.size,
    cylinders: geometry.cylinders,
    heads: geometry.heads,
    sectorsPerTrack: geometry.sectorsPerTrack,
    diskType: f.diskType,
    uniqueId: f.uniqueId,
    savedState: 0,
  }, 'be');
  if (f.dataOffset === null) buf.fill(0xff, VHD_FOOTER_LAYOUT.dataOffset.offset, VHD_FOOTER_LAYOUT.dataOffset.offset + 8);
  buf.writeUInt32BE(vhdChecksum(buf, VHD_FOOTER_LAYOUT.checksum.offset), VHD_FOOTER_LAYOUT.checksum.offset);
  return buf;
}
