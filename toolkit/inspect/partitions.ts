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
import type { RandomAccessSource } from '../io/source';
import { error, humanSize, info, warning, type Finding } from './findings';

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
  /** MBR only: an extended container (its space holds logical partitions) or a logical partition inside one. */
  role?: 'extended' | 'logical';
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

// ---------------------------------------------------------------------------------------------
// The whole table, read from the disk: logical partitions in the extended chain, the GPT backup
// header at the end of the disk, and the findings a validator reports.

/** MBR types of an extended container: CHS (0x05), LBA (0x0f), Linux (0x85). */
const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
/** More logical partitions than this is a loop or a hostile chain, not a disk. */
const MAX_LOGICAL_PARTITIONS = 128;
/** GPT entry arrays larger than this are refused unread (the usual one is 16 KiB). */
const MAX_GPT_ARRAY_BYTES = 1024 * 1024;

export interface PartitionScan {
  table: PartitionTable;
  findings: Finding[];
  /** GPT only: which copies of the header were valid. */
  gpt?: { primary: boolean; backup: boolean };
}

/** Reads the partition table with bounded reads: the head, the extended chain, the GPT backup. */
export async function scanPartitions(source: RandomAccessSource): Promise<PartitionScan> {
  const findings: Finding[] = [];
  if (source.size < SECTOR_SIZE) return { table: { type: 'none', partitions: [] }, findings };
  const head = await source.read(0, Math.min(PARTITION_HEAD_BYTES, source.size));
  if (head[510] !== 0x55 || head[511] !== 0xaa) return { table: { type: 'none', partitions: [] }, findings };
  const mbr = readMbrEntries(head);
  if (mbr.some((entry) => entry.typeByte === GPT_PROTECTIVE_TYPE) && mbrLooksValid(head)) {
    const scan = await scanGpt(source, findings);
    if (scan) {
      checkLayout(scan.table.partitions, source.size, findings);
      return scan;
    }
    findings.push(
      error(
        'protective-mbr-without-gpt',
        'the MBR is a GPT protective MBR (type 0xEE) but neither the primary GPT header (sector 1) nor the backup (last sector) is valid; ' +
          'repair the GPT (for example with gdisk or sgdisk) before exporting the disk again',
      ),
    );
    return { table: { type: 'none', partitions: [] }, findings };
  }
  const table = detectPartitionTable(head);
  if (table.type !== 'mbr') return { table, findings };
  const partitions: Partition[] = [];
  for (const partition of table.partitions) {
    const typeByte = parseInt(partition.type, 16);
    if (!EXTENDED_TYPES.has(typeByte)) {
      partitions.push(partition);
      continue;
    }
    partitions.push({ ...partition, role: 'extended' });
    partitions.push(...(await readLogicalPartitions(source, partition, findings)));
  }
  checkLayout(partitions, source.size, findings);
  return { table: { type: 'mbr', partitions }, findings };
}

/**
 * An extended partition holds a chain of EBRs: each one's first entry is a logical partition
 * (relative to that EBR), its second points to the next EBR (relative to the extended start).
 */
async function readLogicalPartitions(source: RandomAccessSource, extended: Partition, findings: Finding[]): Promise<Partition[]> {
  const logical: Partition[] = [];
  const seen = new Set<number>();
  let ebr = extended.start;
  while (logical.length < MAX_LOGICAL_PARTITIONS) {
    if (seen.has(ebr)) {
      findings.push(error('extended-chain-loop', `the chain of logical partitions in extended partition ${extended.index} loops back on itself; the partition table is damaged`));
      break;
    }
    seen.add(ebr);
    if (ebr + SECTOR_SIZE > source.size || ebr < extended.start || ebr >= extended.start + extended.size) {
      findings.push(error('extended-chain-outside', `a logical partition record of extended partition ${extended.index} lies outside it or past the end of the disk`));
      break;
    }
    const sector = await source.read(ebr, SECTOR_SIZE);
    if (sector[510] !== 0x55 || sector[511] !== 0xaa) {
      if (ebr !== extended.start) findings.push(warning('extended-chain-broken', `a logical partition record of extended partition ${extended.index} has no boot signature; the chain stops there`));
      break;
    }
    const first = sector.readUInt32LE(446 + 8);
    const count = sector.readUInt32LE(446 + 12);
    const type = sector[446 + 4];
    if (type !== 0 && count !== 0) {
      logical.push({
        index: 5 + logical.length,
        start: ebr + first * SECTOR_SIZE,
        size: count * SECTOR_SIZE,
        type: `0x${type.toString(16).padStart(2, '0')}`,
        bootable: sector[446] === 0x80,
        role: 'logical',
      });
    }
    const nextType = sector[462 + 4];
    const nextFirst = sector.readUInt32LE(462 + 8);
    if (nextType === 0 || !EXTENDED_TYPES.has(nextType)) break;
    ebr = extended.start + nextFirst * SECTOR_SIZE;
  }
  return logical;
}

interface GptHeader {
  lba: number;
  alternateLba: number;
  lastUsableLba: number;
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

/** A GPT header at `lba` with a good signature and checksum, or the reason it is not one. */
function parseGptHeader(sector: Buffer, lba: number): GptHeader | string {
  if (sector.toString('latin1', 0, 8) !== 'EFI PART') return 'no GPT signature';
  const headerSize = sector.readUInt32LE(12);
  if (headerSize < 92 || headerSize > SECTOR_SIZE) return `header size ${headerSize} is invalid`;
  const copy = Buffer.from(sector.subarray(0, headerSize));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== sector.readUInt32LE(16)) return 'header checksum does not match';
  const header: GptHeader = {
    lba: Number(sector.readBigUInt64LE(24)),
    alternateLba: Number(sector.readBigUInt64LE(32)),
    lastUsableLba: Number(sector.readBigUInt64LE(48)),
    entriesLba: Number(sector.readBigUInt64LE(72)),
    entryCount: sector.readUInt32LE(80),
    entrySize: sector.readUInt32LE(84),
    entriesCrc: sector.readUInt32LE(88),
  };
  if (header.lba !== lba) return `header says it is at sector ${header.lba}, but it was read at sector ${lba}`;
  if (header.entrySize < 128 || header.entrySize % 8 !== 0 || header.entrySize > 4096 || header.entryCount * header.entrySize > MAX_GPT_ARRAY_BYTES) {
    return `entry array (${header.entryCount} × ${header.entrySize} bytes) is invalid`;
  }
  return header;
}

/** Reads one copy of the GPT (header at `lba` and its entries); a string says why it is unusable. */
async function readGptCopy(source: RandomAccessSource, lba: number): Promise<{ header: GptHeader; partitions: Partition[]; problems: string[] } | string> {
  if ((lba + 1) * SECTOR_SIZE > source.size) return 'it lies past the end of the disk';
  const header = parseGptHeader(await source.read(lba * SECTOR_SIZE, SECTOR_SIZE), lba);
  if (typeof header === 'string') return header;
  const arrayStart = header.entriesLba * SECTOR_SIZE;
  const arrayBytes = header.entryCount * header.entrySize;
  if (arrayStart + arrayBytes > source.size) return 'its entry array lies past the end of the disk';
  const array = await source.read(arrayStart, arrayBytes);
  if (crc32(array) !== header.entriesCrc) return 'partition entries checksum does not match';
  const partitions: Partition[] = [];
  const problems: string[] = [];
  for (let i = 0; i < header.entryCount; i++) {
    const entry = array.subarray(i * header.entrySize, (i + 1) * header.entrySize);
    const type = guidToString(entry.subarray(0, 16));
    if (type === EMPTY_GUID) continue;
    const firstLba = Number(entry.readBigUInt64LE(32));
    const lastLba = Number(entry.readBigUInt64LE(40));
    if (lastLba < firstLba) {
      problems.push(`GPT entry ${i + 1} ends before it starts`);
      continue;
    }
    const name = entry.toString('utf16le', 56, Math.min(header.entrySize, 128)).replace(/\0.*$/s, '');
    partitions.push({ index: i + 1, start: firstLba * SECTOR_SIZE, size: (lastLba - firstLba + 1) * SECTOR_SIZE, type, name });
  }
  return { header, partitions, problems };
}

async function scanGpt(source: RandomAccessSource, findings: Finding[]): Promise<PartitionScan | undefined> {
  const lastLba = Math.floor(source.size / SECTOR_SIZE) - 1;
  const primary = await readGptCopy(source, 1);
  // The backup is where the primary says, else at the last sector (where it belongs).
  let backupLba = lastLba;
  if (typeof primary !== 'string' && primary.header.alternateLba !== lastLba) {
    findings.push(
      warning(
        'gpt-backup-misplaced',
        `the primary GPT header places its backup at sector ${primary.header.alternateLba}, but the disk's last sector is ${lastLba} (the disk was resized); ` +
          'the guest may warn until the GPT is moved to the end (sgdisk -e)',
      ),
    );
    if (primary.header.alternateLba < lastLba) backupLba = primary.header.alternateLba;
  }
  const backup = await readGptCopy(source, backupLba);
  if (typeof primary === 'string' && typeof backup === 'string') return undefined;
  if (typeof primary === 'string') {
    findings.push(warning('gpt-primary-damaged', `the primary GPT is unusable (${primary}); the backup GPT at the end of the disk was used; repair the table before relying on it`));
  } else if (typeof backup === 'string') {
    findings.push(warning('gpt-backup-damaged', `the backup GPT header at sector ${backupLba} is unusable (${backup}); the primary was used; repair the table (sgdisk -e) so both copies agree`));
  } else if (primary.header.entriesCrc !== backup.header.entriesCrc) {
    findings.push(warning('gpt-copies-differ', 'the primary and backup GPT list different partitions; the primary was used'));
  }
  const used = typeof primary === 'string' ? (backup as Exclude<typeof backup, string>) : primary;
  for (const problem of used.problems) findings.push(warning('gpt-entry-invalid', problem));
  for (const partition of used.partitions) {
    if (partition.start + partition.size > (used.header.lastUsableLba + 1) * SECTOR_SIZE && partition.start + partition.size <= source.size) {
      findings.push(warning('gpt-entry-past-usable', `partition ${partition.index} extends past the last usable sector of the GPT (${used.header.lastUsableLba})`));
    }
  }
  return {
    table: { type: 'gpt', partitions: used.partitions },
    findings,
    gpt: { primary: typeof primary !== 'string', backup: typeof backup !== 'string' },
  };
}

/** Partitions past the end of the disk and partitions that overlap (a container and its logicals aside). */
function checkLayout(partitions: Partition[], diskSize: number, findings: Finding[]): void {
  for (const partition of partitions) {
    if (partition.start + partition.size > diskSize) {
      findings.push(
        error(
          'partition-past-end',
          `partition ${partition.index} ends at ${humanSize(partition.start + partition.size)}, past the end of the ${humanSize(diskSize)} disk; ` +
            'the image is truncated or was taken from a larger disk: export the whole disk',
        ),
      );
    }
  }
  const real = partitions.filter((partition) => partition.role !== 'extended').sort((a, b) => a.start - b.start);
  for (let i = 1; i < real.length; i++) {
    const before = real[i - 1];
    const after = real[i];
    if (after.start < before.start + before.size) {
      findings.push(error('partitions-overlap', `partitions ${before.index} and ${after.index} overlap; the partition table is damaged: repair it before exporting the disk`));
    }
  }
  if (partitions.length === 0) findings.push(info('partition-table-empty', 'the partition table lists no partitions'));
}

/** Human names of common partition types, for messages. */
export function partitionTypeName(type: string): string | undefined {
  return PARTITION_TYPE_NAMES[type.toLowerCase()];
}

const PARTITION_TYPE_NAMES: Record<string, string> = {
  '0x07': 'NTFS/exFAT',
  '0x0b': 'FAT32',
  '0x0c': 'FAT32 (LBA)',
  '0x0e': 'FAT16 (LBA)',
  '0x05': 'extended',
  '0x0f': 'extended (LBA)',
  '0x82': 'Linux swap',
  '0x83': 'Linux',
  '0x8e': 'Linux LVM',
  '0xee': 'GPT protective',
  '0xef': 'EFI system',
  'c12a7328-f81f-11d2-ba4b-00a0c93ec93b': 'EFI system',
  '21686148-6449-6e6f-744e-656564454649': 'BIOS boot',
  '0fc63daf-8483-4772-8e79-3d69d8477de4': 'Linux filesystem',
  '4f68bce3-e8cd-4db1-96e7-fbcaf984b709': 'Linux root (x86-64)',
  '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f': 'Linux swap',
  'e6d6d379-f507-44c2-a23c-238f2a3df928': 'Linux LVM',
  'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7': 'Microsoft basic data',
  'e3c9e316-0b5c-4db8-817d-f92df00215ae': 'Microsoft reserved',
  'de94bba4-06d1-4d40-a16a-bfd50179d6ac': 'Windows recovery',
};

export const ESP_TYPES = new Set(['0xef', 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b']);
