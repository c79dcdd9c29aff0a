/**
 * The VMDK block map: grain tables to extents, in virtual order. Unallocated grains are zeros,
 * a whole empty table one zero run; a monolithicSparse grain is data; a streamOptimized grain
 * is a compressed extent bounded in advance and framed by its marker (grain-marker.ts).
 */
import type { RandomAccessSource } from '../../io/source';
import { ExtentCoalescer } from '../extent-coalescer';
import type { Extent } from '../format';
import { GrainMarkerFrame, maxFramedGrainBytes } from './grain-marker';
import { isUnallocated, readGrainTable } from './grain-tables';
import { SECTOR } from './header';
import { GTES_PER_GT, type Layout } from './layout';

/** Grain tables prepared ahead of the one being mapped. */
const TABLES_AHEAD = 4;

interface PreparedTable { table?: Uint32Array; compressedBounds?: Uint32Array }

/** What open learnt about the grain tables, so mapping reads as little as possible again. */
export interface GrainTables {
  gd: Uint32Array;
  /** Tables kept from open (within the cache budget). */
  cache: Map<number, Uint32Array>;
  /** 1 for tables found empty at open, so mapping never re-reads them. */
  emptyTables: Uint8Array;
}

export async function* vmdkExtents(source: RandomAccessSource, layout: Layout, tables: GrainTables): AsyncGenerator<Extent> {
  const coalescer = new ExtentCoalescer();
  // Tables are fetched a few ahead, so small reads overlap with the consumer's work instead
  // of stalling it once per table.
  const ahead: Promise<PreparedTable>[] = [];
  const prefetch = (gtIndex: number) => {
    const prepared = prepareTable(source, layout, tables, gtIndex);
    prepared.catch(() => undefined); // surfaces when awaited in order; never as an unhandled rejection
    ahead.push(prepared);
  };
  for (let i = 0; i < Math.min(TABLES_AHEAD, layout.gtCount); i++) prefetch(i);
  for (let gtIndex = 0; gtIndex < layout.gtCount; gtIndex++) {
    const { table, compressedBounds } = await ahead.shift()!;
    if (gtIndex + TABLES_AHEAD < layout.gtCount) prefetch(gtIndex + TABLES_AHEAD);
    const firstGrain = gtIndex * GTES_PER_GT;
    const grains = Math.min(GTES_PER_GT, layout.grainCount - firstGrain);
    if (!table) {
      // A whole empty table is one zero extent: big sparse disks map in time proportional to their tables.
      const start = firstGrain * layout.grainBytes;
      const done = coalescer.add({ kind: 'zero', start, length: Math.min(grains * layout.grainBytes, layout.virtualSize - start) });
      if (done) yield done;
      continue;
    }
    for (let i = 0; i < grains; i++) {
      const grain = firstGrain + i;
      const start = grain * layout.grainBytes;
      const length = Math.min(layout.grainBytes, layout.virtualSize - start);
      const entry = table[i];
      let extent: Extent;
      if (isUnallocated(entry, layout)) {
        extent = { kind: 'zero', start, length };
      } else if (compressedBounds) {
        extent = {
          kind: 'compressed',
          start,
          length,
          sourceOffset: entry * SECTOR,
          sourceLength: compressedBounds[i],
          codec: 'zlib',
          unitSize: layout.grainBytes,
          frame: new GrainMarkerFrame(grain * (layout.grainBytes / SECTOR)),
        };
      } else {
        extent = { kind: 'data', start, length, sourceOffset: entry * SECTOR };
      }
      const done = coalescer.add(extent);
      if (done) yield done;
    }
  }
  const last = coalescer.flush();
  if (last) yield last;
}

/** One grain table ready for mapping: undefined when empty; with each grain's byte bound for streamOptimized. */
async function prepareTable(source: RandomAccessSource, layout: Layout, tables: GrainTables, gtIndex: number): Promise<PreparedTable> {
  if (tables.gd[gtIndex] === 0 || tables.emptyTables[gtIndex] === 1) return {};
  const table = tables.cache.get(gtIndex) ?? (await readGrainTable(source, layout, tables.gd[gtIndex], gtIndex));
  return { table, compressedBounds: layout.compressed ? compressedGrainBounds(table, layout, source.size) : undefined };
}

/**
 * How many bytes from each compressed grain's marker may belong to it: up to the next grain of
 * the table in file order, and never more than qemu's bound or the end of the file. The marker
 * itself, checked when the grain is read (grain-marker.ts), says exactly how many do.
 *
 * This is what lets a streamOptimized VMDK be read once: the grains are fetched with their
 * markers in a few large reads, and nothing is read beforehand just to learn their sizes.
 */
function compressedGrainBounds(table: Uint32Array, layout: Layout, sourceSize: number): Uint32Array {
  const bounds = new Uint32Array(table.length);
  const used: number[] = [];
  for (let i = 0; i < table.length; i++) if (!isUnallocated(table[i], layout)) used.push(i);
  used.sort((a, b) => table[a] - table[b]);
  const most = maxFramedGrainBytes(layout.grainBytes);
  for (let k = 0; k < used.length; k++) {
    const at = table[used[k]] * SECTOR;
    let next = k + 1;
    // Two entries naming the same sector: at most one of them can match its marker.
    while (next < used.length && table[used[next]] === table[used[k]]) next++;
    const nextAt = next < used.length ? table[used[next]] * SECTOR : Infinity;
    bounds[used[k]] = Math.min(nextAt - at, most, sourceSize - at);
  }
  return bounds;
}
