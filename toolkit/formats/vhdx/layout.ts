/**
 * From a VHDX's header section to its layout: the file identifier, both headers (CRC-32C,
 * sequence numbers, an empty log), the region table (CRC-32C, bounded entries, no overlaps) and
 * the metadata table and items, each checked (checks.ts names every rule) before the next is
 * read. Spec: [MS-VHDX] v1.0 (https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-vhdx/).
 */
import type { RandomAccessSource } from '../../io/source';
import type { ReaderOptions } from '../format';
import { refuse } from '../safety-checks';
import { decodeStruct, rangesOverlap, type ByteRange } from '../struct-layout';
import type { BatGeometry } from './block-table';
import { vhdxChecks } from './checks';
import { vhdxChecksum } from './crc32c';
import { isZeroGuid } from './vhdx-guid';
import {
  BAT_ENTRY_SIZE,
  FILE_IDENTIFIER_LAYOUT,
  FILE_PARAMETERS_LAYOUT,
  HEADER_LAYOUT,
  METADATA_ENTRY_LAYOUT,
  METADATA_ENTRY_SIZE,
  METADATA_ITEM,
  METADATA_TABLE_HEADER_LAYOUT,
  VHDX_METADATA_TABLE_SIZE,
  MiB,
  PARENT_LOCATOR_GUID,
  REGION,
  REGION_TABLE_ENTRY_LAYOUT,
  REGION_TABLE_ENTRY_SIZE,
  REGION_TABLE_HEADER_LAYOUT,
  VHDX_HEADER_OFFSETS,
  VHDX_HEADER_SECTION_SIZE,
  VHDX_HEADER_SIZE,
  VHDX_MAX_TABLE_ENTRIES,
  VHDX_MAX_VIRTUAL_SIZE,
  VHDX_REGION_TABLE_OFFSETS,
  VHDX_REGION_TABLE_SIZE,
  VHDX_SIGNATURE,
  chunkRatio,
  type VhdxHeader,
  type VhdxRegionEntry,
} from './header';

export interface VhdxLayout {
  geometry: BatGeometry;
  /** Byte ranges of the header section, the log and the regions: no payload block may overlap them. */
  occupied: ByteRange[];
  subformat: 'fixed' | 'dynamic';
  details: Record<string, string | number>;
}

/** The current header: the valid copy with the higher sequence number (MS-VHDX 2.2.2). */
async function readCurrentHeader(source: RandomAccessSource): Promise<VhdxHeader> {
  const valid: Array<{ header: VhdxHeader; raw: Buffer }> = [];
  for (const offset of VHDX_HEADER_OFFSETS) {
    const raw = await source.read(offset, VHDX_HEADER_SIZE);
    const header = decodeStruct(raw, HEADER_LAYOUT, 'le');
    if (header.signature === 'head' && header.version === 1 && header.checksum === vhdxChecksum(raw, HEADER_LAYOUT.checksum.offset)) {
      valid.push({ header, raw });
    }
  }
  if (valid.length === 0) {
    refuse(vhdxChecks.headerChecksum, 'neither VHDX header is valid (signature, version or CRC-32C); the file is damaged');
  }
  if (valid.length === 2 && valid[0].header.sequenceNumber === valid[1].header.sequenceNumber && !valid[0].raw.equals(valid[1].raw)) {
    // Equal sequence numbers are only legitimate for identical copies (Disk2vhd writes those).
    refuse(vhdxChecks.headerSequence, 'the two VHDX headers differ but carry the same sequence number');
  }
  valid.sort((a, b) => b.header.sequenceNumber - a.header.sequenceNumber);
  return valid[0].header;
}

interface Regions { bat: VhdxRegionEntry; metadata: VhdxRegionEntry }

async function readRegionTable(source: RandomAccessSource, occupied: ByteRange[]): Promise<Regions> {
  let table: Buffer | null = null;
  for (const offset of VHDX_REGION_TABLE_OFFSETS) {
    const raw = await source.read(offset, VHDX_REGION_TABLE_SIZE);
    const header = decodeStruct(raw, REGION_TABLE_HEADER_LAYOUT, 'le');
    if (header.signature === 'regi' && header.checksum === vhdxChecksum(raw, REGION_TABLE_HEADER_LAYOUT.checksum.offset)) {
      table = raw;
      break;
    }
  }
  if (!table) refuse(vhdxChecks.regionTableChecksum, 'neither VHDX region table is valid (signature or CRC-32C); the file is damaged');
  const count = decodeStruct(table, REGION_TABLE_HEADER_LAYOUT, 'le').entryCount;
  if (count > VHDX_MAX_TABLE_ENTRIES) refuse(vhdxChecks.regionTableEntries, `VHDX region table declares ${count} entries (at most ${VHDX_MAX_TABLE_ENTRIES})`);

  let bat: VhdxRegionEntry | undefined;
  let metadata: VhdxRegionEntry | undefined;
  for (let i = 0; i < count; i++) {
    const at = 16 + i * REGION_TABLE_ENTRY_SIZE;
    const entry = decodeStruct(table.subarray(at, at + REGION_TABLE_ENTRY_SIZE), REGION_TABLE_ENTRY_LAYOUT, 'le');
    const range: ByteRange = { start: entry.fileOffset, end: entry.fileOffset + entry.length, what: `region ${i}` };
    if (entry.fileOffset < VHDX_HEADER_SECTION_SIZE || range.end > source.size) {
      refuse(vhdxChecks.regionBounds, `VHDX region ${i} (${entry.length} bytes at ${entry.fileOffset}) lies outside the file`);
    }
    const clash = occupied.find((other) => rangesOverlap(range, other));
    if (clash) refuse(vhdxChecks.regionOverlap, `VHDX region ${i} overlaps the ${clash.what}`);
    if (entry.guid.equals(REGION.bat)) {
      if (bat) refuse(vhdxChecks.regionDuplicate, 'VHDX region table names the BAT twice');
      bat = entry;
      range.what = 'BAT';
    } else if (entry.guid.equals(REGION.metadata)) {
      if (metadata) refuse(vhdxChecks.regionDuplicate, 'VHDX region table names the metadata region twice');
      metadata = entry;
      range.what = 'metadata region';
    } else if (entry.flags & 1) {
      refuse(vhdxChecks.regionUnknownRequired, `VHDX region ${i} is required but unknown to this reader`);
    }
    occupied.push(range);
  }
  if (!bat || !metadata) refuse(vhdxChecks.regionMissing, 'VHDX region table lacks the BAT or the metadata region');
  return { bat, metadata };
}

interface DiskParameters {
  blockSize: number;
  leaveBlocksAllocated: boolean;
  virtualSize: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
}

async function readMetadata(source: RandomAccessSource, region: VhdxRegionEntry): Promise<DiskParameters> {
  if (region.length < VHDX_METADATA_TABLE_SIZE) refuse(vhdxChecks.metadataBounds, 'VHDX metadata region is smaller than its table');
  const table = await source.read(region.fileOffset, VHDX_METADATA_TABLE_SIZE);
  const header = decodeStruct(table, METADATA_TABLE_HEADER_LAYOUT, 'le');
  if (header.signature !== 'metadata') refuse(vhdxChecks.metadataSignature, "VHDX metadata table lacks its 'metadata' signature");
  if (header.entryCount > VHDX_MAX_TABLE_ENTRIES) {
    refuse(vhdxChecks.metadataEntries, `VHDX metadata table declares ${header.entryCount} entries (at most ${VHDX_MAX_TABLE_ENTRIES})`);
  }
  const items = new Map<string, Buffer>();
  let hasParentLocator = false;
  for (let i = 0; i < header.entryCount; i++) {
    const at = 32 + i * METADATA_ENTRY_SIZE;
    const entry = decodeStruct(table.subarray(at, at + METADATA_ENTRY_SIZE), METADATA_ENTRY_LAYOUT, 'le');
    if (entry.length > 0 && (entry.offset < VHDX_METADATA_TABLE_SIZE || entry.offset + entry.length > region.length)) {
      refuse(vhdxChecks.metadataBounds, `VHDX metadata item ${i} (${entry.length} bytes at ${entry.offset}) lies outside the metadata region`);
    }
    const known = Object.entries(METADATA_ITEM).find(([, item]) => item.guid.equals(entry.itemId));
    if (known) {
      const [name, item] = known;
      if (items.has(name)) refuse(vhdxChecks.metadataDuplicate, `VHDX metadata names ${name} twice`);
      if (entry.length < item.length) refuse(vhdxChecks.metadataBounds, `VHDX metadata item ${name} is ${entry.length} bytes, needs ${item.length}`);
      items.set(name, await source.read(region.fileOffset + entry.offset, item.length));
    } else if (entry.itemId.equals(PARENT_LOCATOR_GUID)) {
      hasParentLocator = true;
    } else if (entry.flags & 4) {
      refuse(vhdxChecks.metadataUnknownRequired, `VHDX metadata item ${i} is required but unknown to this reader`);
    }
  }
  for (const name of Object.keys(METADATA_ITEM)) {
    if (!items.has(name)) refuse(vhdxChecks.metadataMissing, `VHDX metadata lacks the required ${name} item`);
  }
  const params = decodeStruct(items.get('fileParameters')!, FILE_PARAMETERS_LAYOUT, 'le');
  if (params.flags & 2 || hasParentLocator) {
    refuse(vhdxChecks.differencing, 'VHDX differencing disks are not accepted; merge the chain first');
  }
  const blockSize = params.blockSize;
  if (blockSize < MiB || blockSize > 256 * MiB || (blockSize & (blockSize - 1)) !== 0) {
    refuse(vhdxChecks.blockSize, `VHDX block size ${blockSize} is not a power of two between 1 MiB and 256 MiB`);
  }
  const logicalSectorSize = items.get('logicalSectorSize')!.readUInt32LE(0);
  const physicalSectorSize = items.get('physicalSectorSize')!.readUInt32LE(0);
  for (const [what, size] of [['logical', logicalSectorSize], ['physical', physicalSectorSize]] as const) {
    if (size !== 512 && size !== 4096) refuse(vhdxChecks.sectorSize, `VHDX ${what} sector size ${size} is not 512 or 4096`);
  }
  const virtualSize = Number(items.get('virtualDiskSize')!.readBigUInt64LE(0));
  return { blockSize, leaveBlocksAllocated: (params.flags & 1) !== 0, virtualSize, logicalSectorSize, physicalSectorSize };
}

/** Reads and checks everything the BAT walk needs. */
export async function readVhdxLayout(source: RandomAccessSource, options: ReaderOptions): Promise<VhdxLayout> {
  if (source.size < VHDX_HEADER_SECTION_SIZE) refuse(vhdxChecks.tooSmall, `${source.name} is smaller than a VHDX header section (1 MiB)`);
  const identifier = decodeStruct(await source.read(0, 520), FILE_IDENTIFIER_LAYOUT, 'le');
  if (identifier.signature !== VHDX_SIGNATURE) refuse(vhdxChecks.signature, `${source.name} does not start with 'vhdxfile'`);

  const header = await readCurrentHeader(source);
  if (!isZeroGuid(header.logGuid)) {
    refuse(vhdxChecks.logNotEmpty, 'VHDX has an unreplayed log; open and close it in Hyper-V or run qemu-img check -r all');
  }
  const occupied: ByteRange[] = [{ start: 0, end: VHDX_HEADER_SECTION_SIZE, what: 'header section' }];
  if (header.logLength > 0) {
    const log: ByteRange = { start: header.logOffset, end: header.logOffset + header.logLength, what: 'log' };
    if (log.start < VHDX_HEADER_SECTION_SIZE || log.end > source.size) {
      refuse(vhdxChecks.logBounds, `VHDX log (${header.logLength} bytes at ${header.logOffset}) lies outside the file`);
    }
    occupied.push(log);
  }
  const regions = await readRegionTable(source, occupied);
  const disk = await readMetadata(source, regions.metadata);

  const { virtualSize, blockSize } = disk;
  if (virtualSize > VHDX_MAX_VIRTUAL_SIZE || virtualSize > options.maxVirtualSize) {
    refuse(vhdxChecks.virtualSizeLimit, `VHDX declares ${virtualSize} bytes, more than the allowed ${Math.min(VHDX_MAX_VIRTUAL_SIZE, options.maxVirtualSize)}`);
  }
  if (virtualSize % disk.logicalSectorSize !== 0) {
    refuse(vhdxChecks.virtualSize, `VHDX virtual size ${virtualSize} is not a multiple of its ${disk.logicalSectorSize}-byte sectors`);
  }
  const ratio = chunkRatio(disk.logicalSectorSize, blockSize);
  const dataBlocks = Math.ceil(virtualSize / blockSize);
  const batEntries = dataBlocks === 0 ? 0 : dataBlocks + Math.floor((dataBlocks - 1) / ratio);
  if (batEntries * BAT_ENTRY_SIZE > regions.bat.length) {
    refuse(vhdxChecks.batTooSmall, `VHDX BAT region (${regions.bat.length} bytes) cannot hold the ${batEntries} entries the disk needs`);
  }

  const geometry: BatGeometry = { virtualSize, blockSize, ratio, dataBlocks, batOffset: regions.bat.fileOffset, fileSize: source.size };
  return {
    geometry,
    occupied,
    subformat: disk.leaveBlocksAllocated ? 'fixed' : 'dynamic',
    details: {
      blockSize,
      logicalSectorSize: disk.logicalSectorSize,
      physicalSectorSize: disk.physicalSectorSize,
      creator: identifier.creator.toString('utf16le').replace(/\0.*$/s, ''),
    },
  };
}
