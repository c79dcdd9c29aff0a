/**
 * What a partition (or a whole disk) holds, told by its superblock: one declarative entry per
 * kind, the fields it reads given as (offset, size, name), as blkid does. Identification only:
 * nothing here walks a filesystem.
 *
 * Sources: ext4 disk layout (kernel.org ext4 wiki, "The Super Block"); XFS Algorithms & Data
 * Structures ("Superblocks"); btrfs on-disk format (superblock at 64 KiB); Microsoft FAT
 * specification (BPB); NTFS boot sector (the "NTFS    " OEM id); Linux swap header
 * (include/linux/swap.h, union swap_header); LVM2 label header ("LABELONE"); LUKS1 and LUKS2
 * on-disk format specifications; BitLocker ("-FVE-FS-" OEM id, libbde documentation).
 */
import type { RandomAccessSource } from '../io/source';

export type FilesystemType = 'ext2' | 'ext3' | 'ext4' | 'xfs' | 'btrfs' | 'vfat' | 'ntfs' | 'swap' | 'lvm2-pv' | 'luks' | 'bitlocker';

export interface FilesystemInfo {
  type: FilesystemType;
  uuid?: string;
  label?: string;
  /** e.g. 'FAT16', 'LUKS2', 'ext4 (4096-byte blocks)' */
  version?: string;
  encrypted?: boolean;
}

type FieldKind = 'uuid' | 'label-ascii' | 'label-utf16' | 'ascii';

interface Field {
  offset: number;
  size: number;
  name: 'uuid' | 'label' | 'version';
  kind: FieldKind;
}

interface Signature {
  type: FilesystemType;
  /** Magic bytes at an offset from the filesystem's start. */
  magic: { offset: number; bytes: Buffer }[];
  fields: Field[];
  encrypted?: boolean;
  /** Extra reading where the table cannot say it (ext's generation, FAT's flavour). */
  refine?: (bytes: Buffer, info: FilesystemInfo) => FilesystemInfo | undefined;
}

const ascii = (text: string): Buffer => Buffer.from(text, 'latin1');
const SB = 1024; // ext and swap superblocks start at 1 KiB

const SIGNATURES: Signature[] = [
  {
    type: 'luks',
    magic: [{ offset: 0, bytes: Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]) }],
    fields: [{ offset: 168, size: 40, name: 'uuid', kind: 'ascii' }],
    encrypted: true,
    refine: (bytes, info) => {
      const version = bytes.readUInt16BE(6);
      const label = version === 2 ? cString(bytes.subarray(24, 72)) : undefined;
      return { ...info, version: `LUKS${version}`, ...(label ? { label } : {}) };
    },
  },
  {
    type: 'bitlocker',
    magic: [{ offset: 3, bytes: ascii('-FVE-FS-') }],
    fields: [],
    encrypted: true,
  },
  {
    type: 'ntfs',
    magic: [{ offset: 3, bytes: ascii('NTFS    ') }],
    fields: [],
    // blkid's NTFS "UUID" is the 64-bit volume serial number, upper-case hex.
    refine: (bytes, info) => ({ ...info, uuid: bytes.readBigUInt64LE(0x48).toString(16).toUpperCase().padStart(16, '0') }),
  },
  {
    type: 'ext4',
    magic: [{ offset: SB + 56, bytes: Buffer.from([0x53, 0xef]) }],
    fields: [
      { offset: SB + 104, size: 16, name: 'uuid', kind: 'uuid' },
      { offset: SB + 120, size: 16, name: 'label', kind: 'label-ascii' },
    ],
    refine: (bytes, info) => {
      const compat = bytes.readUInt32LE(SB + 92);
      const incompat = bytes.readUInt32LE(SB + 96);
      const blockSize = 1024 << bytes.readUInt32LE(SB + 24);
      // extents, 64bit or flex_bg make it ext4; a journal without them ext3; else ext2 (as blkid decides).
      const type: FilesystemType = incompat & (0x40 | 0x80 | 0x200) ? 'ext4' : compat & 0x4 ? 'ext3' : 'ext2';
      return { ...info, type, version: `${blockSize}-byte blocks` };
    },
  },
  {
    type: 'xfs',
    magic: [{ offset: 0, bytes: ascii('XFSB') }],
    fields: [
      { offset: 32, size: 16, name: 'uuid', kind: 'uuid' },
      { offset: 108, size: 12, name: 'label', kind: 'label-ascii' },
    ],
    refine: (bytes, info) => ({ ...info, version: `v${bytes.readUInt16BE(100) & 0xf}` }),
  },
  {
    type: 'btrfs',
    magic: [{ offset: 0x10040, bytes: ascii('_BHRfS_M') }],
    fields: [
      { offset: 0x10020, size: 16, name: 'uuid', kind: 'uuid' },
      { offset: 0x1012b, size: 256, name: 'label', kind: 'label-ascii' },
    ],
  },
  {
    type: 'swap',
    // The signature ends the first page; 4 KiB pages on every architecture EC2 imports.
    magic: [{ offset: 4096 - 10, bytes: ascii('SWAPSPACE2') }],
    fields: [
      { offset: SB + 12, size: 16, name: 'uuid', kind: 'uuid' },
      { offset: SB + 28, size: 16, name: 'label', kind: 'label-ascii' },
    ],
  },
  {
    type: 'lvm2-pv',
    // The label may sit in any of the first four sectors; LVM writes it to the second.
    magic: [{ offset: 512, bytes: ascii('LABELONE') }],
    fields: [{ offset: 512 + 32, size: 32, name: 'uuid', kind: 'ascii' }],
    refine: (bytes, info) => (bytes.toString('latin1', 512 + 24, 512 + 32) === 'LVM2 001' ? info : undefined),
  },
  {
    type: 'vfat',
    magic: [
      { offset: 510, bytes: Buffer.from([0x55, 0xaa]) },
      { offset: 82, bytes: ascii('FAT32   ') },
    ],
    fields: [{ offset: 71, size: 11, name: 'label', kind: 'label-ascii' }],
    refine: (bytes, info) => fatRefine(bytes, info, 67, 'FAT32'),
  },
  {
    type: 'vfat',
    magic: [
      { offset: 510, bytes: Buffer.from([0x55, 0xaa]) },
      { offset: 54, bytes: ascii('FAT1') },
    ],
    fields: [{ offset: 43, size: 11, name: 'label', kind: 'label-ascii' }],
    refine: (bytes, info) => fatRefine(bytes, info, 39, bytes.toString('latin1', 54, 59).trim()),
  },
];

/** Bytes every signature above fits in. */
export const FILESYSTEM_PROBE_BYTES = 0x10000 + 0x1000;

/** A FAT boot sector also has a sane BPB: power-of-two sector size, clusters, reserved sectors. */
function fatRefine(bytes: Buffer, info: FilesystemInfo, serialAt: number, version: string): FilesystemInfo | undefined {
  const sectorSize = bytes.readUInt16LE(11);
  const clusterSectors = bytes[13];
  if (![512, 1024, 2048, 4096].includes(sectorSize) || clusterSectors === 0 || (clusterSectors & (clusterSectors - 1)) !== 0 || bytes.readUInt16LE(14) === 0) return undefined;
  const serial = bytes.readUInt32LE(serialAt).toString(16).toUpperCase().padStart(8, '0');
  const label = info.label === 'NO NAME' ? undefined : info.label;
  const { label: _dropped, ...rest } = info;
  return { ...rest, ...(label ? { label } : {}), uuid: `${serial.slice(0, 4)}-${serial.slice(4)}`, version };
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.toString('utf8', 0, end < 0 ? bytes.length : end).trim();
}

function uuidString(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Identifies the filesystem whose first bytes are `bytes` (at least FILESYSTEM_PROBE_BYTES when it is that long). */
export function identifyFilesystem(bytes: Buffer): FilesystemInfo | undefined {
  for (const signature of SIGNATURES) {
    const matches = signature.magic.every(({ offset, bytes: magic }) => bytes.length >= offset + magic.length && bytes.subarray(offset, offset + magic.length).equals(magic));
    if (!matches) continue;
    let info: FilesystemInfo = { type: signature.type, ...(signature.encrypted ? { encrypted: true } : {}) };
    for (const field of signature.fields) {
      if (bytes.length < field.offset + field.size) continue;
      const raw = bytes.subarray(field.offset, field.offset + field.size);
      const value = field.kind === 'uuid' ? (raw.every((b) => b === 0) ? '' : uuidString(raw)) : field.kind === 'label-utf16' ? raw.toString('utf16le').replace(/\0.*$/s, '').trim() : cString(raw);
      if (value) info = { ...info, [field.name]: value };
    }
    const refined = signature.refine ? signature.refine(bytes, info) : info;
    if (refined) return refined;
  }
  return undefined;
}

/** Reads the probe bytes at `offset` (bounded by `size`) and identifies them. */
export async function probeFilesystem(source: RandomAccessSource, offset: number, size: number): Promise<FilesystemInfo | undefined> {
  const length = Math.min(FILESYSTEM_PROBE_BYTES, size, source.size - offset);
  if (length < 512) return undefined;
  return identifyFilesystem(await source.read(offset, length));
}
