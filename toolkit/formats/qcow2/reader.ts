/**
 * Qcow2Reader: opens a qcow2 image (versions 2 and 3), checks it, and reduces the active L1/L2
 * tables to a block map. Snapshots are ignored: only the active L1 table is the disk.
 *
 * Memory stays bounded whatever the image declares: the L1 table is read in slices and L2
 * tables (one cluster each, at most 2 MiB) one at a time.
 */
import type { RandomAccessSource } from '../../io/source';
import { ExtentCoalescer } from '../extent-coalescer';
import type { DiskImageReader, Extent, ImageInfo, ReaderOptions } from '../format';
import { refusal } from '../safety-checks';
import { qcow2Checks } from './checks';
import { l1EntryOffset, mapL2Entries } from './extent-map';
import { decodeQcow2Header, QCOW2_HEADER_READ_LENGTH } from './header';
import { checkQcow2Basics, checkQcow2Header, type Qcow2Layout } from './layout';

/** L1 entries read per slice (64 KiB). */
const L1_SLICE_ENTRIES = 8192;
/** L2 entries mapped between yields: at most 32 extents each (extended L2), so ≤ 32 Ki pending extents. */
const L2_BATCH_ENTRIES = 1024;

export class Qcow2Reader implements DiskImageReader {
  readonly info: ImageInfo;

  private constructor(
    private readonly source: RandomAccessSource,
    readonly layout: Qcow2Layout,
  ) {
    this.info = {
      format: 'qcow2',
      subformat: layout.version === 3 ? 'v3' : 'v2',
      virtualSize: layout.virtualSize,
      fileSize: layout.fileSize,
      details: {
        compat: layout.version === 3 ? '1.1' : '0.10',
        clusterSize: layout.clusterSize,
        extendedL2: layout.extendedL2,
        lazyRefcounts: layout.lazyRefcounts,
        snapshots: layout.snapshots,
        refcountBits: layout.refcountBits,
      },
    };
  }

  static async open(source: RandomAccessSource, options: ReaderOptions): Promise<Qcow2Reader> {
    const head = await source.read(0, Math.min(QCOW2_HEADER_READ_LENGTH, source.size));
    const raw = decodeQcow2Header(head);
    // Header extensions and a backing file name live in the first cluster: read it once its size is known to be sane.
    const { clusterSize } = checkQcow2Basics(raw);
    const firstCluster = await source.read(0, Math.min(clusterSize, source.size));
    const reader = new Qcow2Reader(source, checkQcow2Header(raw, firstCluster, source.size, options));
    await reader.checkL1Table();
    return reader;
  }

  /**
   * Checks every L1 entry that maps the disk (at most 32 MiB of table, read in slices), so an
   * image with a broken L1 table is refused at open, not halfway through a conversion. L2 tables
   * are checked as the block map reaches them: reading them all here would cost metadata in
   * proportion to the disk.
   */
  private async checkL1Table(): Promise<void> {
    for await (const entry of this.l1Entries()) {
      if (entry.l2Offset !== 0) this.checkL2TableOffset(entry.l2Offset, entry.index);
    }
  }

  private async *l1Entries(): AsyncIterable<{ index: number; l2Offset: number }> {
    const { l1EntriesUsed, l1TableOffset } = this.layout;
    for (let slice = 0; slice < l1EntriesUsed; slice += L1_SLICE_ENTRIES) {
      const entries = Math.min(L1_SLICE_ENTRIES, l1EntriesUsed - slice);
      const l1 = await this.source.read(l1TableOffset + slice * 8, entries * 8);
      for (let i = 0; i < entries; i++) {
        const index = slice + i;
        yield { index, l2Offset: l1EntryOffset(l1.readUInt32BE(i * 8), l1.readUInt32BE(i * 8 + 4), index) };
      }
    }
  }

  async *blockMap(): AsyncIterable<Extent> {
    const { l2Entries, clusterSize, virtualSize } = this.layout;
    const coalescer = new ExtentCoalescer();
    const finished: Extent[] = [];
    const emit = (piece: Extent): void => {
      const done = coalescer.add(piece);
      if (done) finished.push(done);
    };
    const guestPerL2 = l2Entries * clusterSize;

    for await (const { index, l2Offset } of this.l1Entries()) {
      const guestStart = index * guestPerL2;
      // The declared size may end in a partial sector that is not part of the disk.
      if (guestStart >= virtualSize) break;
      const clusters = Math.min(l2Entries, Math.ceil((virtualSize - guestStart) / clusterSize));
      if (l2Offset === 0) {
        emit({ kind: 'zero', start: guestStart, length: Math.min(guestPerL2, virtualSize - guestStart) });
      } else {
        const table = await this.readL2Table(l2Offset, index, clusters);
        // In batches, so a table of fragmented subclusters never piles up millions of extents.
        for (let first = 0; first < clusters; first += L2_BATCH_ENTRIES) {
          mapL2Entries(this.layout, table, first, Math.min(clusters, first + L2_BATCH_ENTRIES), guestStart, emit);
          yield* finished;
          finished.length = 0;
        }
      }
      yield* finished;
      finished.length = 0;
    }
    const last = coalescer.flush();
    if (last) yield last;
  }

  /** Reads the entries of one L2 table that map the virtual disk (all of them but in the last table). */
  private async readL2Table(offset: number, l1Index: number, clusters: number): Promise<Buffer> {
    this.checkL2TableOffset(offset, l1Index);
    return this.source.read(offset, clusters * this.layout.l2EntrySize);
  }

  private checkL2TableOffset(offset: number, l1Index: number): void {
    const { clusterSize, fileSize } = this.layout;
    if (offset % clusterSize !== 0 || offset + clusterSize > fileSize) {
      throw refusal(
        qcow2Checks.l2TableOffset,
        `qcow2 L1 entry ${l1Index} points to an L2 table at offset ${offset}, which is not cluster aligned or lies outside the ${fileSize}-byte file`,
      );
    }
  }

  /** The source belongs to whoever opened it; the reader holds nothing else. */
  async close(): Promise<void> {}
}
