/**
 * The grain directory and grain tables: read once at open and checked whole (every table
 * inside the file, no two sharing bytes, every used entry pointing at a grain inside the file),
 * so a damaged table is refused before any conversion starts.
 */
import type { RandomAccessSource } from '../../io/source';
import { mapLimit } from '../../map-limit';
import { refusal } from '../safety-checks';
import { vmdkChecks } from './checks';
import { FLAG_ZERO_GRAIN_GTE, GRAIN_MARKER_SIZE, SECTOR } from './header';
import { GT_BYTES, GTES_PER_GT, type Layout } from './layout';

/** Grain tables that lie back to back are fetched in reads of at most this size. */
const GT_READ_BYTES = 1024 * 1024;
const READ_CONCURRENCY = 16;
/** GT entry meaning "this grain reads as zeros" when FLAG_ZERO_GRAIN_GTE is set. */
const GTE_ZEROED = 1;

/** A grain that reads as zeros: never allocated, or marked zero where the header allows it. */
export function isUnallocated(entry: number, layout: Layout): boolean {
  return entry === 0 || (entry === GTE_ZEROED && (layout.flags & FLAG_ZERO_GRAIN_GTE) !== 0);
}

/** The grain directory, whole: it and every table it names lie inside the file, no two tables overlapping. */
export async function readGrainDirectory(source: RandomAccessSource, layout: Layout): Promise<Uint32Array> {
  const gdOffset = layout.header.gdOffset;
  const gdBytes = layout.gtCount * 4;
  if (gdOffset * 512n < BigInt(layout.firstDataByte) || gdOffset * 512n + BigInt(gdBytes) > BigInt(source.size)) {
    throw refusal(vmdkChecks.gdOffset, `VMDK grain directory at sector ${gdOffset} is not inside the file; the file is truncated or damaged`);
  }
  const raw = await source.read(Number(gdOffset) * SECTOR, gdBytes);
  const gd = new Uint32Array(layout.gtCount);
  for (let i = 0; i < gd.length; i++) gd[i] = raw.readUInt32LE(i * 4);
  // Every table inside the file, and no two tables sharing bytes (valid writers never do that).
  const sorted = Uint32Array.from(gd.filter((entry) => entry !== 0)).sort();
  for (let i = 0; i < sorted.length; i++) {
    const byte = sorted[i] * SECTOR;
    if (byte < layout.firstDataByte || byte + GT_BYTES > source.size) {
      throw refusal(vmdkChecks.gtOffset, `VMDK grain table at sector ${sorted[i]} is not inside the file; the file is truncated or damaged`);
    }
    if (i > 0 && (sorted[i] - sorted[i - 1]) * SECTOR < GT_BYTES) {
      throw refusal(vmdkChecks.gtOverlap, `VMDK grain tables at sectors ${sorted[i - 1]} and ${sorted[i]} overlap; the file is damaged`);
    }
  }
  return gd;
}

/**
 * Reads and checks every grain table once at open, so a damaged table is refused before any
 * conversion starts. Tables that lie back to back (the usual layout) are fetched together.
 */
export async function readAllGrainTables(
  source: RandomAccessSource,
  layout: Layout,
  gd: Uint32Array,
  cacheBytes: number,
): Promise<{ allocatedBytes: number; cache: Map<number, Uint32Array>; emptyTables: Uint8Array }> {
  const order = Array.from(gd.keys()).filter((i) => gd[i] !== 0).sort((a, b) => gd[a] - gd[b]);
  // Tables past the budget are simply read again while mapping.
  const cache = new Map<number, Uint32Array>();
  const emptyTables = new Uint8Array(gd.length);
  const runs: number[][] = [];
  for (const gtIndex of order) {
    const run = runs[runs.length - 1];
    const previous = run?.[run.length - 1];
    if (run && gd[gtIndex] === gd[previous!] + GT_BYTES / SECTOR && (run.length + 1) * GT_BYTES <= GT_READ_BYTES) run.push(gtIndex);
    else runs.push([gtIndex]);
  }
  let allocatedBytes = 0;
  await mapLimit(runs, READ_CONCURRENCY, async (run) => {
    const raw = await source.read(gd[run[0]] * SECTOR, run.length * GT_BYTES);
    run.forEach((gtIndex, k) => {
      const table = checkGrainTable(raw.subarray(k * GT_BYTES, (k + 1) * GT_BYTES), layout, source, gtIndex);
      let used = 0;
      for (let i = 0; i < table.length; i++) {
        if (!isUnallocated(table[i], layout)) {
          const start = (gtIndex * GTES_PER_GT + i) * layout.grainBytes;
          used += Math.min(layout.grainBytes, layout.virtualSize - start);
        }
      }
      allocatedBytes += used;
      if (used === 0) emptyTables[gtIndex] = 1;
      else if ((cache.size + 1) * GT_BYTES <= cacheBytes) cache.set(gtIndex, table);
    });
  });
  return { allocatedBytes, cache, emptyTables };
}

export async function readGrainTable(source: RandomAccessSource, layout: Layout, gtSector: number, gtIndex: number): Promise<Uint32Array> {
  return checkGrainTable(await source.read(gtSector * SECTOR, GT_BYTES), layout, source, gtIndex);
}

/** Entries beyond the last grain are ignored; every used entry must point at a grain inside the file. */
function checkGrainTable(raw: Buffer, layout: Layout, source: RandomAccessSource, gtIndex: number): Uint32Array {
  const firstGrain = gtIndex * GTES_PER_GT;
  const grains = Math.min(GTES_PER_GT, layout.grainCount - firstGrain);
  const table = new Uint32Array(grains);
  for (let i = 0; i < grains; i++) {
    const entry = raw.readUInt32LE(i * 4);
    table[i] = entry;
    if (isUnallocated(entry, layout)) continue;
    const start = (firstGrain + i) * layout.grainBytes;
    const needed = layout.compressed ? GRAIN_MARKER_SIZE : Math.min(layout.grainBytes, layout.virtualSize - start);
    const byte = entry * SECTOR;
    if (byte < layout.firstDataByte || byte + needed > source.size) {
      throw refusal(
        vmdkChecks.grainOffset,
        `VMDK grain for virtual offset ${start} points at sector ${entry}, outside the file's data; the file is truncated or damaged`,
      );
    }
  }
  return table;
}

