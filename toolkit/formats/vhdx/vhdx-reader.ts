/**
 * Reads VHDX files (dynamic and fixed; differencing refused) into a block map whose contents
 * match qemu's vhdx driver, after checking every structure the spec lets us check: both header
 * copies (CRC-32C, sequence numbers), the region table (CRC-32C, bounded entries, no overlaps),
 * the metadata table and items, an empty log, and every BAT entry of the payload blocks.
 */
import { ImageFormatError } from '../../errors';
import type { RandomAccessSource } from '../../io/source';
import type { DiskImageReader, Extent, ImageInfo, ReaderOptions } from '../format';
import { coalesceExtents } from '../extent-coalescer';
import { decodeStruct, rangesOverlap, type ByteRange } from '../vhd/struct-layout';
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
  PAYLOAD_STATE,
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
} from './vhdx-structures';

/** BAT entries read per window: the BAT is walked in slices, never loaded whole. */
const BAT_WINDOW_ENTRIES = 128 * 1024;

export async function sniffVhdx(head: Buffer): Promise<boolean> {
  return head.length >= 8 && head.toString('latin1', 0, 8) === VHDX_SIGNATURE;
}

function refuse(check: string, message: string): never {
  throw new ImageFormatError(check, message);
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
    refuse('vhdx-header-checksum', 'neither VHDX header is valid (signature, version or CRC-32C); the file is damaged');
  }
  if (valid.length === 2 && valid[0].header.sequenceNumber === valid[1].header.sequenceNumber && !valid[0].raw.equals(valid[1].raw)) {
    // Equal sequence numbers are only legitimate for identical copies (Disk2vhd writes those).
    refuse('vhdx-header-sequence', 'the two VHDX headers differ but carry the same sequence number');
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
  if (!table) refuse('vhdx-region-table-checksum', 'neither VHDX region table is valid (signature or CRC-32C); the file is damaged');
  const count = decodeStruct(table, REGION_TABLE_HEADER_LAYOUT, 'le').entryCount;
  if (count > VHDX_MAX_TABLE_ENTRIES) refuse('vhdx-region-table-entries', `VHDX region table declares ${count} entries (at most ${VHDX_MAX_TABLE_ENTRIES})`);

  let bat: VhdxRegionEntry | undefined;
  let metadata: VhdxRegionEntry | undefined;
  for (let i = 0; i < count; i++) {
    const at = 16 + i * REGION_TABLE_ENTRY_SIZE;
    const entry = decodeStruct(table.subarray(at, at + REGION_TABLE_ENTRY_SIZE), REGION_TABLE_ENTRY_LAYOUT, 'le');
    const range: ByteRange = { start: entry.fileOffset, end: entry.fileOffset + entry.length, what: `region ${i}` };
    if (entry.fileOffset < VHDX_HEADER_SECTION_SIZE || range.end > source.size) {
      refuse('vhdx-region-bounds', `VHDX region ${i} (${entry.length} bytes at ${entry.fileOffset}) lies outside the file`);
    }
    const clash = occupied.find((other) => rangesOverlap(range, other));
    if (clash) refuse('vhdx-region-overlap', `VHDX region ${i} overlaps the ${clash.what}`);
    if (entry.guid.equals(REGION.bat)) {
      if (bat) refuse('vhdx-region-duplicate', 'VHDX region table names the BAT twice');
      bat = entry;
      range.what = 'BAT';
    } else if (entry.guid.equals(REGION.metadata)) {
      if (metadata) refuse('vhdx-region-duplicate', 'VHDX region table names the metadata region twice');
      metadata = entry;
      range.what = 'metadata region';
    } else if (entry.flags & 1) {
      refuse('vhdx-region-unknown-required', `VHDX region ${i} is required but unknown to this reader`);
    }
    occupied.push(range);
  }
  if (!bat || !metadata) refuse('vhdx-region-missing', 'VHDX region table lacks the BAT or the metadata region');
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
  if (region.length < VHDX_METADATA_TABLE_SIZE) refuse('vhdx-metadata-bounds', 'VHDX metadata region is smaller than its table');
  const table = await source.read(region.fileOffset, VHDX_METADATA_TABLE_SIZE);
  const header = decodeStruct(table, METADATA_TABLE_HEADER_LAYOUT, 'le');
  if (header.signature !== 'metadata') refuse('vhdx-metadata-signature', "VHDX metadata table lacks its 'metadata' signature");
  if (header.entryCount > VHDX_MAX_TABLE_ENTRIES) {
    refuse('vhdx-metadata-entries', `VHDX metadata table declares ${header.entryCount} entries (at most ${VHDX_MAX_TABLE_ENTRIES})`);
  }
  const items = new Map<string, Buffer>();
  let hasParentLocator = false;
  for (let i = 0; i < header.entryCount; i++) {
    const at = 32 + i * METADATA_ENTRY_SIZE;
    const entry = decodeStruct(table.subarray(at, at + METADATA_ENTRY_SIZE), METADATA_ENTRY_LAYOUT, 'le');
    if (entry.length > 0 && (entry.offset < VHDX_METADATA_TABLE_SIZE || entry.offset + entry.length > region.length)) {
      refuse('vhdx-metadata-bounds', `VHDX metadata item ${i} (${entry.length} bytes at ${entry.offset}) lies outside the metadata region`);
    }
    const known = Object.entries(METADATA_ITEM).find(([, item]) => item.guid.equals(entry.itemId));
    if (known) {
      const [name, item] = known;
      if (items.has(name)) refuse('vhdx-metadata-duplicate', `VHDX metadata names ${name} twice`);
      if (entry.length < item.length) refuse('vhdx-metadata-bounds', `VHDX metadata item ${name} is ${entry.length} bytes, needs ${item.length}`);
      items.set(name, await source.read(region.fileOffset + entry.offset, item.length));
    } else if (entry.itemId.equals(PARENT_LOCATOR_GUID)) {
      hasParentLocator = true;
    } else if (entry.flags & 4) {
      refuse('vhdx-metadata-unknown-required', `VHDX metadata item ${i} is required but unknown to this reader`);
    }
  }
  for (const name of Object.keys(METADATA_ITEM)) {
    if (!items.has(name)) refuse('vhdx-metadata-missing', `VHDX metadata lacks the required ${name} item`);
  }
  const params = decodeStruct(items.get('fileParameters')!, FILE_PARAMETERS_LAYOUT, 'le');
  if (params.flags & 2 || hasParentLocator) {
    refuse('vhdx-differencing', 'VHDX differencing disks are not accepted; merge the chain first');
  }
  const blockSize = params.blockSize;
  if (blockSize < MiB || blockSize > 256 * MiB || (blockSize & (blockSize - 1)) !== 0) {
    refuse('vhdx-block-size', `VHDX block size ${blockSize} is not a power of two between 1 MiB and 256 MiB`);
  }
  const logicalSectorSize = items.get('logicalSectorSize')!.readUInt32LE(0);
  const physicalSectorSize = items.get('physicalSectorSize')!.readUInt32LE(0);
  for (const [what, size] of [['logical', logicalSectorSize], ['physical', physicalSectorSize]] as const) {
    if (size !== 512 && size !== 4096) refuse('vhdx-sector-size', `VHDX ${what} sector size ${size} is not 512 or 4096`);
  }
  const virtualSize = Number(items.get('virtualDiskSize')!.readBigUInt64LE(0));
  return { blockSize, leaveBlocksAllocated: (params.flags & 1) !== 0, virtualSize, logicalSectorSize, physicalSectorSize };
}

export async function openVhdx(source: RandomAccessSource, options: ReaderOptions): Promise<DiskImageReader> {
  if (source.size < VHDX_HEADER_SECTION_SIZE) refuse('vhdx-too-small', `${source.name} is smaller than a VHDX header section (1 MiB)`);
  const identifier = decodeStruct(await source.read(0, 520), FILE_IDENTIFIER_LAYOUT, 'le');
  if (identifier.signature !== VHDX_SIGNATURE) refuse('vhdx-signature', `${source.name} does not start with 'vhdxfile'`);

  const header = await readCurrentHeader(source);
  if (!isZeroGuid(header.logGuid)) {
    refuse('vhdx-log-not-empty', 'VHDX has an unreplayed log; open and close it in Hyper-V or run qemu-img check -r all');
  }
  const occupied: ByteRange[] = [{ start: 0, end: VHDX_HEADER_SECTION_SIZE, what: 'header section' }];
  if (header.logLength > 0) {
    const log: ByteRange = { start: header.logOffset, end: header.logOffset + header.logLength, what: 'log' };
    if (log.start < VHDX_HEADER_SECTION_SIZE || log.end > source.size) {
      refuse('vhdx-log-bounds', `VHDX log (${header.logLength} bytes at ${header.logOffset}) lies outside the file`);
    }
    occupied.push(log);
  }
  const regions = await readRegionTable(source, occupied);
  const disk = await readMetadata(source, regions.metadata);

  const { virtualSize, blockSize } = disk;
  if (virtualSize > VHDX_MAX_VIRTUAL_SIZE || virtualSize > options.maxVirtualSize) {
    refuse('vhdx-virtual-size-limit', `VHDX declares ${virtualSize} bytes, more than the allowed ${Math.min(VHDX_MAX_VIRTUAL_SIZE, options.maxVirtualSize)}`);
  }
  if (virtualSize % disk.logicalSectorSize !== 0) {
    refuse('vhdx-virtual-size', `VHDX virtual size ${virtualSize} is not a multiple of its ${disk.logicalSectorSize}-byte sectors`);
  }
  const ratio = chunkRatio(disk.logicalSectorSize, blockSize);
  const dataBlocks = Math.ceil(virtualSize / blockSize);
  const batEntries = dataBlocks === 0 ? 0 : dataBlocks + Math.floor((dataBlocks - 1) / ratio);
  if (batEntries * BAT_ENTRY_SIZE > regions.bat.length) {
    refuse('vhdx-bat-too-small', `VHDX BAT region (${regions.bat.length} bytes) cannot hold the ${batEntries} entries the disk needs`);
  }

  const geometry: BatGeometry = { virtualSize, blockSize, ratio, dataBlocks, batOffset: regions.bat.fileOffset, fileSize: source.size };
  // Check every entry now, so a bad image is refused at open rather than part-way through a conversion.
  const allocatedSize = await validateBat(source, geometry, occupied);
  const info: ImageInfo = {
    format: 'vhdx',
    subformat: disk.leaveBlocksAllocated ? 'fixed' : 'dynamic',
    virtualSize,
    fileSize: source.size,
    allocatedSize,
    details: {
      blockSize,
      logicalSectorSize: disk.logicalSectorSize,
      physicalSectorSize: disk.physicalSectorSize,
      creator: identifier.creator.toString('utf16le').replace(/\0.*$/s, ''),
    },
  };
  return new VhdxReader(info, source, geometry);
}

interface BatGeometry {
  virtualSize: number;
  blockSize: number;
  ratio: number;
  dataBlocks: number;
  batOffset: number;
  fileSize: number;
}

interface PayloadBlock { index: number; state: number; fileOffset: number; start: number; length: number }

/**
 * Walks the payload entries of the BAT in virtual order, a window at a time. Sector bitmap
 * entries (one after every `ratio` payload entries) are skipped: they only matter to
 * differencing disks, which are refused.
 */
async function* payloadBlocks(source: RandomAccessSource, g: BatGeometry): AsyncGenerator<PayloadBlock> {
  for (let first = 0; first < g.dataBlocks; first += BAT_WINDOW_ENTRIES) {
    const last = Math.min(g.dataBlocks, first + BAT_WINDOW_ENTRIES) - 1;
    const firstEntry = first + Math.floor(first / g.ratio);
    const lastEntry = last + Math.floor(last / g.ratio);
    const window = await source.read(g.batOffset + firstEntry * BAT_ENTRY_SIZE, (lastEntry - firstEntry + 1) * BAT_ENTRY_SIZE);
    for (let index = first; index <= last; index++) {
      const entry = window.readBigUInt64LE((index + Math.floor(index / g.ratio) - firstEntry) * BAT_ENTRY_SIZE);
      const start = index * g.blockSize;
      yield {
        index,
        state: Number(entry & 7n),
        fileOffset: Number(entry >> 20n) * MiB,
        start,
        length: Math.min(g.blockSize, g.virtualSize - start),
      };
    }
  }
}

/** Refuses any payload entry that is unsupported, outside the file, or on top of metadata or another block. */
async function validateBat(source: RandomAccessSource, g: BatGeometry, occupied: ByteRange[]): Promise<number> {
  let allocated = 0;
  const present: number[] = [];
  for await (const block of payloadBlocks(source, g)) {
    switch (block.state) {
      case PAYLOAD_STATE.notPresent:
      case PAYLOAD_STATE.undefined:
      case PAYLOAD_STATE.zero:
      case PAYLOAD_STATE.unmapped:
      case PAYLOAD_STATE.unmappedV095:
        break;
      case PAYLOAD_STATE.fullyPresent: {
        const range: ByteRange = { start: block.fileOffset, end: block.fileOffset + block.length, what: `block ${block.index}` };
        if (range.start < VHDX_HEADER_SECTION_SIZE || range.end > g.fileSize) {
          refuse('vhdx-block-bounds', `VHDX block ${block.index} at offset ${block.fileOffset} lies outside the file (the file is truncated or damaged)`);
        }
        const clash = occupied.find((other) => rangesOverlap(range, other));
        if (clash) refuse('vhdx-block-overlap', `VHDX block ${block.index} at offset ${block.fileOffset} overlaps the ${clash.what}`);
        // Every stored block needs its own bytes, so there can be no more of them than fit in the file.
        if (present.length * g.blockSize > g.fileSize) refuse('vhdx-block-overlap', 'VHDX BAT maps more blocks than the file can hold');
        present.push(block.fileOffset / MiB);
        allocated += block.length;
        break;
      }
      case PAYLOAD_STATE.partiallyPresent:
        refuse('vhdx-partially-present', `VHDX block ${block.index} is partially present, which only differencing disks may use`);
      default:
        refuse('vhdx-block-state', `VHDX block ${block.index} has the undefined state ${block.state}`);
    }
  }
  const sorted = Float64Array.from(present).sort();
  for (let i = 1; i < sorted.length; i++) {
    if ((sorted[i] - sorted[i - 1]) * MiB < g.blockSize) {
      refuse('vhdx-block-overlap', `two VHDX blocks overlap at offset ${sorted[i] * MiB}`);
    }
  }
  return allocated;
}

class VhdxReader implements DiskImageReader {
  constructor(
    readonly info: ImageInfo,
    private readonly source: RandomAccessSource,
    private readonly geometry: BatGeometry,
  ) {}

  blockMap(): AsyncIterable<Extent> {
    return coalesceExtents(this.extents());
  }

  private async *extents(): AsyncGenerator<Extent> {
    for await (const block of payloadBlocks(this.source, this.geometry)) {
      // validateBat has refused every other state, so this is data or zeros.
      if (block.state === PAYLOAD_STATE.fullyPresent) {
        yield { kind: 'data', start: block.start, length: block.length, sourceOffset: block.fileOffset };
      } else {
        yield { kind: 'zero', start: block.start, length: block.length };
      }
    }
  }

  async close(): Promise<void> {
    // The source belongs to the caller.
  }
}
