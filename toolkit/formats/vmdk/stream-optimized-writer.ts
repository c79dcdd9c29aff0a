/**
 * Writes a streamOptimized VMDK (the form EC2 exports and VMware/ovftool import) in one pass:
 * header with the grain directory "at end", embedded descriptor, compressed grains each behind
 * a grain marker, each grain table after its grains, then the grain directory, the footer
 * (a header copy that knows where the directory is) and the end-of-stream marker.
 * All-zero grains are not written; grain tables with no grains are left out (GD entry 0).
 * Grains are deflated in batches on worker threads (grain-deflate-pool.ts), several batches at
 * once, and each batch is written in order as one buffer.
 */
import { randomBytes } from 'crypto';
import { deflateGrains, DEFLATE_POOL_SIZE, type DeflatedBatch } from './grain-deflate-pool';
import type { ByteSink } from '../../io/sink';
import { isAllZero } from '../../io/zeros';
import type { DiskImageWriter, VirtualChunk } from '../format';
import {
  COMPRESSION_DEFLATE,
  encodeMetadataMarker,
  encodeSparseHeader,
  FLAG_COMPRESSED,
  FLAG_MARKERS,
  FLAG_NEWLINE_TEST,
  GD_AT_END,
  MARKER_EOS,
  MARKER_FOOTER,
  MARKER_GD,
  MARKER_GT,
  SECTOR,
  VMDK_MAGIC,
  type SparseHeader,
} from './header';

export interface StreamOptimizedOptions {
  /** ddb.adapterType; lsilogic is what EC2 exports and what most hypervisors boot from. */
  adapterType?: 'lsilogic' | 'buslogic' | 'ide' | 'pvscsi' | 'legacyESX';
  /** ddb.virtualHWVersion. */
  virtualHWVersion?: number;
  /** The file name recorded in the extent line (the VMDK names itself). */
  extentName?: string;
  /** zlib level; 6 is zlib's default and what qemu-img uses for streamOptimized. */
  level?: number;
  /**
   * Store grains that sample as incompressible (random, already compressed, encrypted) instead of
   * running deflate's match search on them; deflate would emit stored blocks anyway. Default true;
   * false deflates every grain at `level`, exactly as qemu-img does.
   */
  storeIncompressible?: boolean;
  /** Grains being compressed at once (rounded up to whole batches); bounds memory to about twice this many grains. */
  window?: number;
}

const GRAIN_SECTORS = 128; // 64 KiB, what VMware writes
const GRAIN_BYTES = GRAIN_SECTORS * SECTOR;
const GTES_PER_GT = 512;
const DESCRIPTOR_SECTORS = 20;
const OVERHEAD_SECTORS = GRAIN_SECTORS; // header + descriptor, padded so grains start grain-aligned

/** Grains per worker message: 2 MiB in, one sink write out. */
const BATCH_GRAINS = 32;

type Pending =
  | { kind: 'batch'; grains: number[]; packed: Promise<DeflatedBatch> }
  | { kind: 'table'; gtIndex: number };

/** Grains collected for the next worker message; all belong to one grain table. */
interface OpenBatch {
  buffer: Buffer;
  used: number;
  grains: number[];
  lengths: number[];
}

export class StreamOptimizedVmdkWriter implements DiskImageWriter {
  readonly name = 'vmdk' as const;

  constructor(private readonly options: StreamOptimizedOptions = {}) {}

  async write(input: { virtualSize: number; chunks: AsyncIterable<VirtualChunk> }, sink: ByteSink): Promise<void> {
    const session = new WriteSession(input.virtualSize, sink, this.options, extentNameFor(sink, this.options));
    await session.start();
    for await (const chunk of input.chunks) await session.take(chunk);
    await session.finish();
  }
}

function extentNameFor(sink: ByteSink, options: StreamOptimizedOptions): string {
  if (options.extentName) return options.extentName;
  const base = sink.name.split(/[/\\]/).pop() ?? '';
  return /^[A-Za-z0-9._-]{1,200}$/.test(base) && base.toLowerCase().endsWith('.vmdk') ? base : 'disk.vmdk';
}

class WriteSession {
  private readonly capacity: number; // sectors
  private readonly grainCount: number;
  private readonly gtCount: number;
  private readonly gd: Uint32Array;
  private readonly tables = new Map<number, Uint32Array>();
  private readonly queue: Pending[] = [];
  /** Batches queued (compressing or compressed, not yet written) before take() waits. */
  private readonly batchesInFlight: number;
  private batch: OpenBatch | undefined;
  /** Input and output buffers the workers gave back, reused for the next batches. */
  private readonly spare: ArrayBuffer[] = [];
  private readonly spareOutputs: ArrayBuffer[] = [];
  private readonly level: number;
  private position = 0; // bytes written so far
  private cursor = 0; // virtual bytes consumed so far
  private grain: Buffer | undefined; // the grain being assembled, when it has data
  private tableHasGrains = false; // the current grain table has a queued grain
  private currentTable = 0;

  constructor(
    private readonly virtualSize: number,
    private readonly sink: ByteSink,
    private readonly options: StreamOptimizedOptions,
    private readonly extentName: string,
  ) {
    if (!Number.isSafeInteger(virtualSize) || virtualSize <= 0) throw new Error(`cannot write a VMDK of ${virtualSize} bytes`);
    this.capacity = Math.ceil(virtualSize / SECTOR);
    this.grainCount = Math.ceil(this.capacity / GRAIN_SECTORS);
    this.gtCount = Math.ceil(this.grainCount / GTES_PER_GT);
    this.gd = new Uint32Array(this.gtCount);
    this.batchesInFlight = Math.max(1, Math.ceil((options.window ?? 2 * DEFLATE_POOL_SIZE * BATCH_GRAINS) / BATCH_GRAINS));
    this.level = options.level ?? 6;
  }

  private header(gdOffset: bigint): SparseHeader {
    return {
      magicNumber: VMDK_MAGIC,
      version: 3, // VMware refuses streamOptimized with an older header version
      flags: FLAG_NEWLINE_TEST | FLAG_COMPRESSED | FLAG_MARKERS,
      capacity: BigInt(this.capacity),
      grainSize: BigInt(GRAIN_SECTORS),
      descriptorOffset: 1n,
      descriptorSize: BigInt(DESCRIPTOR_SECTORS),
      numGTEsPerGT: GTES_PER_GT,
      rgdOffset: 0n,
      gdOffset,
      overHead: BigInt(OVERHEAD_SECTORS),
      uncleanShutdown: 0,
      singleEndLineChar: 0x0a,
      nonEndLineChar: 0x20,
      doubleEndLineChar1: 0x0d,
      doubleEndLineChar2: 0x0a,
      compressAlgorithm: COMPRESSION_DEFLATE,
    };
  }

  private descriptor(): Buffer {
    const adapter = this.options.adapterType ?? 'lsilogic';
    // BIOS geometry as VMware records it: IDE 16 heads, SCSI 255 heads; 63 sectors per track.
    const heads = adapter === 'ide' ? 16 : 255;
    const sectors = 63;
    const cylinders = Math.min(Math.ceil(this.capacity / (heads * sectors)), adapter === 'ide' ? 16383 : 65535);
    const text = [
      '# Disk DescriptorFile',
      'version=1',
      `CID=${randomBytes(4).toString('hex')}`,
      'parentCID=ffffffff',
      'createType="streamOptimized"',
      '',
      '# Extent description',
      `RW ${this.capacity} SPARSE "${this.extentName}"`,
      '',
      '# The Disk Data Base',
      '#DDB',
      '',
      `ddb.virtualHWVersion = "${this.options.virtualHWVersion ?? 4}"`,
      `ddb.geometry.cylinders = "${cylinders}"`,
      `ddb.geometry.heads = "${heads}"`,
      `ddb.geometry.sectors = "${sectors}"`,
      `ddb.adapterType = "${adapter}"`,
      '',
    ].join('\n');
    const block = Buffer.alloc(DESCRIPTOR_SECTORS * SECTOR);
    if (Buffer.byteLength(text) > block.length) throw new Error('VMDK descriptor does not fit its reserved sectors');
    block.write(text, 'utf8');
    return block;
  }

  async start(): Promise<void> {
    await this.emit(encodeSparseHeader(this.header(GD_AT_END)));
    await this.emit(this.descriptor());
    await this.sink.writeZeros(OVERHEAD_SECTORS * SECTOR - this.position);
    this.position = OVERHEAD_SECTORS * SECTOR;
  }

  async take(chunk: VirtualChunk): Promise<void> {
    if (chunk.offset !== this.cursor) throw new Error(`VMDK writer got a chunk at ${chunk.offset}, expected ${this.cursor}`);
    const length = 'data' in chunk ? chunk.data.length : chunk.zeroLength;
    if (this.cursor + length > this.virtualSize) throw new Error('VMDK writer got chunks past the virtual size');
    if ('data' in chunk) {
      let used = 0;
      while (used < chunk.data.length) {
        const within = this.cursor % GRAIN_BYTES;
        const take = Math.min(GRAIN_BYTES - within, chunk.data.length - used);
        if (take === GRAIN_BYTES) {
          // A whole grain in the chunk: checked and copied straight into the batch, no assembly.
          const grain = chunk.data.subarray(used, used + take);
          const grainIndex = this.cursor / GRAIN_BYTES;
          used += take;
          this.cursor += take;
          if (!isAllZero(grain)) await this.enqueueGrain(grainIndex, grain);
          continue;
        }
        this.grain ??= Buffer.alloc(GRAIN_BYTES);
        chunk.data.copy(this.grain, within, used, used + take);
        used += take;
        await this.advance(take);
      }
    } else {
      let left = chunk.zeroLength;
      while (left > 0) {
        const within = this.cursor % GRAIN_BYTES;
        // Whole zero grains are skipped arithmetically: a huge empty disk costs no allocation.
        const take = within === 0 && this.grain === undefined && left >= GRAIN_BYTES ? left - (left % GRAIN_BYTES) : Math.min(GRAIN_BYTES - within, left);
        left -= take;
        await this.advance(take);
      }
    }
  }

  /** Moves the cursor; completes the grain when it reaches a grain boundary (or the disk's end). */
  private async advance(bytes: number): Promise<void> {
    const grainIndex = Math.floor(this.cursor / GRAIN_BYTES);
    this.cursor += bytes;
    if (this.cursor % GRAIN_BYTES === 0 || this.cursor === this.virtualSize) {
      // The last grain holds only the sectors up to the capacity, as VMware's own writers do;
      // readers inflate it to exactly the bytes the disk has left.
      const used = Math.min(GRAIN_BYTES, this.capacity * SECTOR - grainIndex * GRAIN_BYTES);
      const grain = this.grain?.subarray(0, used);
      this.grain = undefined;
      if (grain && !isAllZero(grain)) await this.enqueueGrain(grainIndex, grain);
    }
  }

  /** Copies the grain into the open batch (`data` is not kept); sends the batch when full. */
  private async enqueueGrain(grain: number, data: Buffer): Promise<void> {
    await this.closeTablesBefore(Math.floor(grain / GTES_PER_GT));
    if (!this.batch) {
      const spare = this.spare.pop();
      this.batch = { buffer: spare ? Buffer.from(spare) : Buffer.allocUnsafeSlow(BATCH_GRAINS * GRAIN_BYTES), used: 0, grains: [], lengths: [] };
    }
    const batch = this.batch;
    data.copy(batch.buffer, batch.used);
    batch.used += data.length;
    batch.grains.push(grain);
    batch.lengths.push(data.length);
    this.tableHasGrains = true;
    if (batch.grains.length === BATCH_GRAINS) await this.sendBatch();
  }

  /** Hands the open batch to a worker; waits while too many batches are ahead of the sink. */
  private async sendBatch(): Promise<void> {
    const batch = this.batch;
    if (!batch) return;
    this.batch = undefined;
    // allocUnsafeSlow gives each batch its own ArrayBuffer, so it can be transferred whole.
    const packed = deflateGrains({
      input: batch.buffer.buffer as ArrayBuffer,
      lengths: batch.lengths,
      lbas: batch.grains.map((grain) => grain * GRAIN_SECTORS),
      level: this.level,
      storeIncompressible: this.options.storeIncompressible ?? true,
      output: this.spareOutputs.pop(),
    });
    packed.catch(() => undefined); // a failure surfaces when drained; until then it must not count as unhandled
    this.queue.push({ kind: 'batch', grains: batch.grains, packed });
    let batches = 0;
    for (const item of this.queue) if (item.kind === 'batch') batches++;
    if (batches > this.batchesInFlight) await this.drainBatches(this.batchesInFlight);
  }

  /** Writes queued items in order until at most `keep` batches are left queued. */
  private async drainBatches(keep: number): Promise<void> {
    let batches = 0;
    for (const item of this.queue) if (item.kind === 'batch') batches++;
    while (this.queue.length > 0 && batches > keep) {
      const item = this.queue.shift()!;
      if (item.kind === 'batch') {
        batches--;
        await this.writeBatch(item.grains, await item.packed);
      } else await this.writeTable(item.gtIndex);
    }
  }

  /** Grain tables follow their grains: once a later table gets a grain, the earlier ones are complete. */
  private async closeTablesBefore(gtIndex: number): Promise<void> {
    if (gtIndex === this.currentTable) return;
    await this.sendBatch(); // its grains belong to the table being closed
    if (this.tableHasGrains) this.queue.push({ kind: 'table', gtIndex: this.currentTable });
    this.currentTable = gtIndex;
    this.tableHasGrains = false;
  }

  private async writeBatch(grains: number[], packed: DeflatedBatch): Promise<void> {
    // Every grain of a batch belongs to one table (closeTablesBefore sends the batch first).
    const gtIndex = Math.floor(grains[0] / GTES_PER_GT);
    let table = this.tables.get(gtIndex);
    if (!table) this.tables.set(gtIndex, (table = new Uint32Array(GTES_PER_GT)));
    const first = this.position / SECTOR;
    grains.forEach((grain, i) => (table[grain % GTES_PER_GT] = first + packed.sectors[i]));
    if (this.spare.length < this.batchesInFlight + 1) this.spare.push(packed.input);
    await this.emit(packed.bytes);
    // The sink is done with the bytes once write() resolves.
    if (this.spareOutputs.length < this.batchesInFlight + 1) this.spareOutputs.push(packed.bytes.buffer as ArrayBuffer);
  }

  /** Tables queued after the last batch. */
  private async drainTables(): Promise<void> {
    while (this.queue.length > 0) {
      const item = this.queue.shift()!;
      if (item.kind !== 'table') throw new Error('VMDK writer: a grain batch was left unwritten');
      await this.writeTable(item.gtIndex);
    }
  }

  private async writeTable(gtIndex: number): Promise<void> {
    const table = this.tables.get(gtIndex)!;
    this.tables.delete(gtIndex);
    const bytes = Buffer.alloc(GTES_PER_GT * 4);
    table.forEach((entry, i) => bytes.writeUInt32LE(entry, i * 4));
    await this.emit(encodeMetadataMarker(bytes.length / SECTOR, MARKER_GT));
    this.gd[gtIndex] = this.position / SECTOR;
    await this.emit(bytes);
  }

  async finish(): Promise<void> {
    if (this.cursor !== this.virtualSize) throw new Error(`VMDK writer got ${this.cursor} of ${this.virtualSize} bytes`);
    await this.closeTablesBefore(this.gtCount); // past the last table: sends the last batch, closes the table
    await this.drainBatches(0);
    await this.drainTables();
    const gdBytes = Buffer.alloc(roundUp(this.gtCount * 4));
    this.gd.forEach((entry, i) => gdBytes.writeUInt32LE(entry, i * 4));
    await this.emit(encodeMetadataMarker(gdBytes.length / SECTOR, MARKER_GD));
    const gdOffset = this.position / SECTOR;
    await this.emit(gdBytes);
    await this.emit(encodeMetadataMarker(1, MARKER_FOOTER));
    await this.emit(encodeSparseHeader(this.header(BigInt(gdOffset))));
    await this.emit(encodeMetadataMarker(0, MARKER_EOS));
  }

  private async emit(bytes: Buffer): Promise<void> {
    await this.sink.write(bytes);
    this.position += bytes.length;
  }
}

function roundUp(bytes: number): number {
  return Math.ceil(bytes / SECTOR) * SECTOR;
}
