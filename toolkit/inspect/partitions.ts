/**
 * Partition table detection from the first 34 sectors of a disk (MBR, GPT header and the usual
 * 128-entry GPT array). Sector size is taken as 512 bytes, as on every disk EC2 imports.
 *
 * MBR (sector 0): boot signature 0x55 0xAA at 510; four 16-byte entries at 446:
 *   +0 status (0x80 = bootable), +4 type, +8 first LBA (u32le), +12 sector count (u32le).
 * GPT (UEFI spec 2.10 §5.3): a protective MBR entry of type 0xEE, then at LBA 1:
 *   +0 "EFI PART", +8 revision, +12 header size, +16 header CRC32 (over header size, this field
 *   zeroed), +72 entries LBA (u64le), +80 entry count, +84 entry size, +88 entries CRC32.
 *   Entry: +0 type GUID, +16 unique GUID, +32 first LBA, +40 last LBA (inclusive), +56 name (UTF-16LE).
 * Logical partitions inside an MBR extended partition live in a chain beyond the head; the
 * extended container itself is listed.
 */
import { crc32 } from 'zlib';

export const SECTOR_SIZE = 512;
/** What callers should read: protective MBR, GPT header and 32 sectors of entries. */
export const PARTITION_HEAD_BYTES = 34 * SECTOR_SIZE;

export interface Partition {
  /** 1-based, as the guest numbers them (sda1). */
  index: number;
  /** Byte offset of the partition on the disk. */
  start: number;
  /** Length in bytes. */
  size: number;
  /** MBR: the type byte as '0x83'; GPT: the type GUID, lowercase ('0fc63daf-8483-4772-8e79-3d69d8477de4'). */
  type: string;
  /** MBR only: the active (boot) flag. */
  bootable?: boolean;
  /** GPT only: the partition name. */
  name?: string;
}

export interface PartitionTable {
  type: 'mbr' | 'gpt' | 'none';
  partitions: Partition[];
  /** Damage worth reporting that did not stop detection (a GPT array beyond the head, an entry past the end). */
  warnings?: string[];
}

const GPT_PROTECTIVE_TYPE = 0xee;
const EMPTY_GUID = '00000000-0000-0000-0000-000000000000';

export function detectPartitionTable(head: Buffer): PartitionTable {
  if (head.length < SECTOR_SIZE || head[510] !== 0x55 || head[511] !== 0xaa) return { type: 'none', partitions: [] };
  const mbr = readMbrEntries(head);
  if (mbr.some((entry) => entry.typeByte === GPT_PROTECTIVE_TYPE)) {
    const gpt = readGpt(head);
    if (gpt) return gpt;
  }
  // A bare filesystem's boot sector (FAT, NTFS) also ends in 0x55AA; its "entries" are boot code.
  if (!mbrLooksValid(head)) return { type: 'none', partitions: [] };
  if (mbr.length === 0 && !head.subarray(446, 510).every((byte) => byte === 0)) return { type: 'none', partitions: [] };
  return {
    type: 'mbr',
    partitions: mbr.map(({ typeByte, ...partition }) => ({ ...partition, type: `0x${typeByte.toString(16).padStart(2, '0')}` })),
  };
}

function readMbrEntries(head: Buffer): (Omit<Partition, 'type'> & { typeByte: number })[] {
  const entries = [];
  for (let i = 0; i < 4; i++) {
    const at = 446 + i * 16;
    const typeByte = head[at + 4];
    const firstLba = head.readUInt32LE(at + 8);
    const sectors = head.readUInt32LE(at + 12);
    if (typeByte === 0 || sectors === 0) continue;
    entries.push({ index: i + 1, start: firstLba * SECTOR_SIZE, size: sectors * SECTOR_SIZE, typeByte, bootable: head[at] === 0x80 });
  }
  return entries;
}

/** Status bytes are 0x00 or 0x80 in a real partition table; anything else is boot code or a filesystem. */
function mbrLooksValid(head: Buffer): boolean {
  for (let i = 0; i < 4; i++) {
    const status = head[446 + i * 16];
    if (status !== 0 && status !== 0x80) return false;
  }
  return true;
}

/** Returns undefined when there is no GPT header at LBA 1 (a plain MBR disk that uses type 0xEE oddly). */
function readGpt(head: Buffer): PartitionTable | undefined {
  if (head.length < 2 * SECTOR_SIZE) return undefined;
  const header = head.subarray(SECTOR_SIZE, 2 * SECTOR_SIZE);
  if (header.toString('latin1', 0, 8) !== 'EFI PART') return undefined;
  const warnings: string[] = [];
  const headerSize = header.readUInt32LE(12);
  if (headerSize < 92 || headerSize > SECTOR_SIZE) {
    return { type: 'gpt', partitions: [], warnings: [`GPT header size ${headerSize} is invalid`] };
  }
  const copy = Buffer.from(header.subarray(0, headerSize));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== header.readUInt32LE(16)) {
    return { type: 'gpt', partitions: [], warnings: ['GPT header checksum does not match; the primary partition table is damaged'] };
  }
  const entriesLba = Number(header.readBigUInt64LE(72));
  const entryCount = header.readUInt32LE(80);
  const entrySize = header.readUInt32LE(84);
  const lastUsableLba = Number(header.readBigUInt64LE(48));
  if (entrySize < 128 || entrySize % 8 !== 0 || entrySize > 4096 || entryCount > 65536) {
    return { type: 'gpt', partitions: [], warnings: [`GPT entry array (${entryCount} × ${entrySize} bytes) is invalid`] };
  }
  const arrayStart = entriesLba * SECTOR_SIZE;
  const arrayBytes = entryCount * entrySize;
  const available = Math.max(0, Math.min(head.length - arrayStart, arrayBytes));
  if (available < arrayBytes) {
    warnings.push(`GPT entry array extends beyond the first ${head.length} bytes; only the entries within them were read and their checksum was not verified`);
  } else if (crc32(head.subarray(arrayStart, arrayStart + arrayBytes)) !== header.readUInt32LE(88)) {
    return { type: 'gpt', partitions: [], warnings: ['GPT partition entries checksum does not match; the partition table is damaged'] };
  }
  const partitions: Partition[] = [];
  for (let i = 0; (i + 1) * entrySize <= available; i++) {
    const entry = head.subarray(arrayStart + i * entrySize, arrayStart + (i + 1) * entrySize);
    const type = guidToString(entry.subarray(0, 16));
    if (type === EMPTY_GUID) continue;
    const firstLba = Number(entry.readBigUInt64LE(32));
    const lastLba = Number(entry.readBigUInt64LE(40));
    if (lastLba < firstLba) {
      warnings.push(`GPT entry ${i + 1} ends before it starts`);
      continue;
    }
    if (lastLba > lastUsableLba) warnings.push(`GPT entry ${i + 1} extends past the last usable sector`);
    const name = entry.toString('utf16le', 56, Math.min(entrySize, 128)).replace(/\0.*$/s, '');
    partitions.push({ index: i + 1, start: firstLba * SECTOR_SIZE, size: (lastLba - firstLba + 1) * SECTOR_SIZE, type, name });
  }
  return warnings.length ? { type: 'gpt', partitions, warnings } : { type: 'gpt', partitions };
}

/** GUIDs are stored with their first three fields little-endian. */
function guidToString(bytes: Buffer): string {
  const hex = (from: number, to: number, reverse: boolean): string => {
    const part = Buffer.from(bytes.subarray(from, to));
    return (reverse ? part.reverse() : part).toString('hex');
  };
  return [hex(0, 4, true), hex(4, 6, true), hex(6, 8, true), hex(8, 10, false), hex(10, 16, false)].join('-');
}
