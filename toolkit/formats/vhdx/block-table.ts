/**
 * The VHDX block allocation table (BAT), walked a window at a time and never loaded whole. At
 * open every payload entry is checked: a defined state, inside the file, clear of the metadata
 * and of every other block.
 */
import type { RandomAccessSource } from '../../io/source';
import { refuse } from '../safety-checks';
import { rangesOverlap, type ByteRange } from '../struct-layout';
import { vhdxChecks } from './checks';
import { BAT_ENTRY_SIZE, MiB, PAYLOAD_STATE, VHDX_HEADER_SECTION_SIZE } from './header';

/** BAT entries read per window: the BAT is walked in slices, never loaded whole. */
const BAT_WINDOW_ENTRIES = 128 * 1024;

export interface BatGeometry {
  virtualSize: number;
  blockSize: number;
  ratio: number;
  dataBlocks: number;
  batOffset: number;
  fileSize: number;
}

export interface PayloadBlock { index: number; state: number; fileOffset: number; start: number; length: number }

/**
 * Walks the payload entries of the BAT in virtual order, a window at a time. Sector bitmap
 * entries (one after every `ratio` payload entries) are skipped: they only matter to
 * differencing disks, which are refused.
 */
export async function* payloadBlocks(source: RandomAccessSource, g: BatGeometry): AsyncGenerator<PayloadBlock> {
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
export async function validateBat(source: RandomAccessSource, g: BatGeometry, occupied: ByteRange[]): Promise<number> {
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
          refuse(vhdxChecks.blockBounds, `VHDX block ${block.index} at offset ${block.fileOffset} lies outside the file (the file is truncated or damaged)`);
        }
        const clash = occupied.find((other) => rangesOverlap(range, other));
        if (clash) refuse(vhdxChecks.blockOverlap, `VHDX block ${block.index} at offset ${block.fileOffset} overlaps the ${clash.what}`);
        // Every stored block needs its own bytes, so there can be no more of them than fit in the file.
        if (present.length * g.blockSize > g.fileSize) refuse(vhdxChecks.blockOverlap, 'VHDX BAT maps more blocks than the file can hold');
        present.push(block.fileOffset / MiB);
        allocated += block.length;
        break;
      }
      case PAYLOAD_STATE.partiallyPresent:
        refuse(vhdxChecks.partiallyPresent, `VHDX block ${block.index} is partially present, which only differencing disks may use`);
      default:
        refuse(vhdxChecks.blockState, `VHDX block ${block.index} has the undefined state ${block.state}`);
    }
  }
  const sorted = Float64Array.from(present).sort();
  for (let i = 1; i < sorted.length; i++) {
    if ((sorted[i] - sorted[i - 1]) * MiB < g.blockSize) {
      refuse(vhdxChecks.blockOverlap, `two VHDX blocks overlap at offset ${sorted[i] * MiB}`);
    }
  }
  return allocated;
}
