/**
 * Reads a hosted sparse VMDK (monolithicSparse or streamOptimized) as a block map. Every
 * structure is checked before it is used: the header, the embedded descriptor (see
 * descriptor.ts), the footer when the grain directory is at the end, the grain directory, every
 * grain table, and every grain marker (grain-marker.ts, checked when the grain's bytes are read).
 * Model: qemu block/vmdk.c (vmdk_open_vmdk4, vmdk_read_extent), oslo.utils VMDKInspector;
 * written from the VMware VMDK 5.0 spec.
 */
import { ImageFormatError } from '../../errors';
import type { RandomAccessSource } from '../../io/source';
import type { DiskImageReader, Extent, ImageInfo, ReaderOptions } from '../format';
import { mapLimit } from '../../map-limit';
import {
  checkDescriptorPolicy,
  DESCRIPTOR_FILE_SIGNATURE,
  MAX_DESCRIPTOR_BYTES,
  parseDescriptor,
  type AcceptedCreateType,
} from './descriptor';
import {
  COMPRESSION_DEFLATE,
  COMPRESSION_NONE,
  FLAG_COMPRESSED,
  FLAG_MARKERS,
  FLAG_NEWLINE_TEST,
  FLAG_ZERO_GRAIN_GTE,
  GD_AT_END,
  GRAIN_MARKER_SIZE,
  HEADER_SIZE,
  KNOWN_FLAGS,
  MARKER_EOS,
  MARKER_FOOTER,
  parseMetadataMarker,
  parseSparseHeader,
  SECTOR,
  VMDK_MAGIC,
  type SparseHeader,
} from './sparse-header';
import { GrainMarkerFrame, maxFramedGrainBytes } from './grain-marker';
import { ExtentCoalescer } from '../extent-coalescer';

/** Grain sizes (sectors) we accept: powers of two from 4 KiB to 1 MiB (VMware uses 64 KiB). */
const MIN_GRAIN_SECTORS = 8n;
const MAX_GRAIN_SECTORS = 2048n;
const GTES_PER_GT = 512;
const GT_BYTES = GTES_PER_GT * 4;
/** Grain tables kept in memory after open by default; larger disks re-read them while mapping. */
const GT_CACHE_BYTES = 64 * 1024 * 1024;

export interface VmdkReaderOptions extends ReaderOptions {
  /** Bytes of grain tables kept from open for mapping (default 64 MiB); the rest are read again. */
  grainTableCacheBytes?: number;
}
/** Grain tables that lie back to back are fetched in reads of at most this size. */
const GT_READ_BYTES = 1024 * 1024;
const READ_CONCURRENCY = 16;
/** Grain tables prepared ahead of the one being mapped. */
const TABLES_AHEAD = 4;

interface PreparedTable { table?: Uint32Array; compressedBounds?: Uint32Array }
/** GT entry meaning "this grain reads as zeros" when FLAG_ZERO_GRAIN_GTE is set. */
const GTE_ZEROED = 1;

/** Looks like a VMDK: a sparse extent header, or a text descriptor (opened only to be refused with a reason). */
export function looksLikeVmdk(head: Buffer): boolean {
  if (head.length >= 4 && head.readUInt32LE(0) === VMDK_MAGIC) return true;
  const start = head.toString('latin1', 0, Math.min(head.length, 64)).replace(/\s+/g, '').toLowerCase();
  return start.startsWith(DESCRIPTOR_FILE_SIGNATURE.replace(/\s+/g, '').toLowerCase());
}

interface Layout {
  createType: AcceptedCreateType;
  ddb: Map<string, string>;
  header: SparseHeader; // the footer copy when the grain directory is at the end
  flags: number;
  virtualSize: number;
  grainBytes: number;
  grainCount: number;
  gtCount: number;
  compressed: boolean;
  /** Grain and table offsets must lie at or after this byte: nothing may overlap header and descriptor. */
  firstDataByte: number;
  gdAtEnd: boolean;
}

export class VmdkReader implements DiskImageReader {
  private constructor(
    readonly info: ImageInfo,
    private readonly source: RandomAccessSource,
    private readonly layout: Layout,
    private readonly gd: Uint32Array,
    private readonly gtCache: Map<number, Uint32Array>,
    /** 1 for tables found empty at open, so mapping never re-reads them. */
    private readonly emptyTables: Uint8Array,
  ) {}

  static async open(source: RandomAccessSource, options: VmdkReaderOptions): Promise<VmdkReader> {
    const head = await source.read(0, Math.min(HEADER_SIZE, source.size));
    // A text descriptor may be shorter than a header; it is told apart (and refused with its reason) first.
    if (!(head.length >= 4 && head.readUInt32LE(0) === VMDK_MAGIC)) {
      if (looksLikeVmdk(head)) await refuseDescriptorFile(source);
      throw new ImageFormatError('vmdk-magic', 'file does not start with a VMDK sparse extent header (KDMV)');
    }
    if (head.length < HEADER_SIZE) {
      throw new ImageFormatError('vmdk-truncated', `VMDK is ${source.size} bytes, shorter than its 512-byte header; the file is truncated`);
    }
    const layout = await readLayout(source, parseSparseHeader(head), options);
    const gd = await readGrainDirectory(source, layout);
    const { allocatedBytes, cache, emptyTables } = await readAllGrainTables(source, layout, gd, options.grainTableCacheBytes ?? GT_CACHE_BYTES);
    const header = layout.header;
    const info: ImageInfo = {
      format: 'vmdk',
      subformat: layout.createType,
      virtualSize: layout.virtualSize,
      fileSize: source.size,
      allocatedSize: allocatedBytes,
      details: {
        version: header.version,
        grainSize: layout.grainBytes,
        compressed: layout.compressed,
        grainDirectoryAtEnd: layout.gdAtEnd,
        ...shownDdb(layout.ddb),
      },
    };
    return new VmdkReader(info, source, layout, gd, cache, emptyTables);
  }

  async *blockMap(): AsyncIterable<Extent> {
    const { layout } = this;
    const coalescer = new ExtentCoalescer();
    // Tables are fetched a few ahead, so small reads overlap with the consumer's work instead
    // of stalling it once per table.
    const ahead: Promise<PreparedTable>[] = [];
    const prefetch = (gtIndex: number) => {
      const prepared = this.prepareTable(gtIndex);
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
  private async prepareTable(gtIndex: number): Promise<PreparedTable> {
    const { layout } = this;
    if (this.gd[gtIndex] === 0 || this.emptyTables[gtIndex] === 1) return {};
    const table = this.gtCache.get(gtIndex) ?? (await readGrainTable(this.source, layout, this.gd[gtIndex], gtIndex));
    return { table, compressedBounds: layout.compressed ? compressedGrainBounds(table, layout, this.source.size) : undefined };
  }

  async close(): Promise<void> {
    // The source belongs to whoever opened it.
  }
}

/** The descriptor entries worth showing a user, bounded (they are user-controlled text). */
function shownDdb(ddb: Map<string, string>): Record<string, string> {
  const shown: Record<string, string> = {};
  for (const [key, name] of [['ddb.adapterType', 'adapterType'], ['ddb.virtualHWVersion', 'virtualHWVersion'], ['ddb.toolsVersion', 'toolsVersion']]) {
    const value = ddb.get(key);
    if (value !== undefined) shown[name] = value.replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
  }
  return shown;
}

function isUnallocated(entry: number, layout: Layout): boolean {
  return entry === 0 || (entry === GTE_ZEROED && (layout.flags & FLAG_ZERO_GRAIN_GTE) !== 0);
}

/** A standalone text descriptor names separate extent files; say what it is, then refuse it. */
async function refuseDescriptorFile(source: RandomAccessSource): Promise<never> {
  if (source.size > MAX_DESCRIPTOR_BYTES) {
    throw new ImageFormatError('vmdk-descriptor-size', `VMDK descriptor file is larger than ${MAX_DESCRIPTOR_BYTES} bytes; export the disk as streamOptimized`);
  }
  const text = (await source.read(0, source.size)).toString('utf8');
  checkDescriptorPolicy(parseDescriptor(text));
  throw new ImageFormatError(
    'vmdk-descriptor-file',
    'this is a VMDK descriptor file whose data lives in separate extent files; export the disk as a single streamOptimized VMDK',
  );
}

async function readLayout(source: RandomAccessSource, header: SparseHeader, options: ReaderOptions): Promise<Layout> {
  checkHeaderFields(header, options);
  const gdAtEnd = header.gdOffset === GD_AT_END;
  const effective = gdAtEnd ? await readFooter(source, header) : header;
  const descriptorText = await readEmbeddedDescriptor(source, effective);
  const descriptor = parseDescriptor(descriptorText);
  const createType = checkDescriptorPolicy(descriptor, effective.capacity);
  const compressed = (effective.flags & FLAG_COMPRESSED) !== 0;
  if ((createType === 'streamOptimized') !== compressed) {
    throw new ImageFormatError(
      'vmdk-create-type-flags',
      `VMDK createType ${createType} does not match its header (${compressed ? 'compressed' : 'uncompressed'} grains); the file is inconsistent`,
    );
  }
  const grainBytes = Number(effective.grainSize) * SECTOR;
  const virtualSize = Number(effective.capacity) * SECTOR;
  const grainCount = Math.ceil(virtualSize / grainBytes);
  const descriptorEnd = effective.descriptorOffset + effective.descriptorSize; // bounded by readEmbeddedDescriptor
  return {
    createType,
    ddb: descriptor.ddb,
    header: effective,
    flags: effective.flags,
    virtualSize,
    grainBytes,
    grainCount,
    gtCount: Math.ceil(grainCount / GTES_PER_GT),
    compressed,
    firstDataByte: Math.max(1, Number(descriptorEnd)) * SECTOR,
    gdAtEnd,
  };
}

/** Header checks that need nothing but the 512 bytes; a footer must then agree with these fields. */
function checkHeaderFields(header: SparseHeader, options: ReaderOptions): void {
  if (header.version < 1 || header.version > 3) {
    throw new ImageFormatError('vmdk-version', `VMDK sparse header version ${header.version} is not supported (1, 2 or 3 are)`);
  }
  if ((header.flags & ~KNOWN_FLAGS) !== 0) {
    throw new ImageFormatError('vmdk-flags', `VMDK header has unknown flags 0x${header.flags.toString(16)}; the file is not a disk we can read safely`);
  }
  if (
    (header.flags & FLAG_NEWLINE_TEST) !== 0 &&
    (header.singleEndLineChar !== 0x0a || header.nonEndLineChar !== 0x20 || header.doubleEndLineChar1 !== 0x0d || header.doubleEndLineChar2 !== 0x0a)
  ) {
    throw new ImageFormatError(
      'vmdk-line-ending-test',
      'VMDK header line-ending test failed: the file was altered by a text-mode (ASCII) transfer; upload it in binary mode',
    );
  }
  const compressed = (header.flags & FLAG_COMPRESSED) !== 0;
  const markers = (header.flags & FLAG_MARKERS) !== 0;
  const expectedAlgorithm = compressed ? COMPRESSION_DEFLATE : COMPRESSION_NONE;
  if (compressed !== markers || header.compressAlgorithm !== expectedAlgorithm) {
    throw new ImageFormatError(
      'vmdk-compression',
      `VMDK header combines compression ${header.compressAlgorithm} with flags 0x${header.flags.toString(16)}; only uncompressed grains, or deflate grains with markers, are supported`,
    );
  }
  const maxSectors = BigInt(Math.floor(options.maxVirtualSize / SECTOR));
  if (header.capacity === 0n || header.capacity > maxSectors) {
    throw new ImageFormatError(
      'vmdk-virtual-size',
      `VMDK declares a virtual size of ${header.capacity * 512n} bytes; accepted are 1 to ${options.maxVirtualSize} bytes`,
    );
  }
  const grain = header.grainSize;
  if (grain < MIN_GRAIN_SECTORS || grain > MAX_GRAIN_SECTORS || (grain & (grain - 1n)) !== 0n) {
    throw new ImageFormatError('vmdk-grain-size', `VMDK grain size of ${grain} sectors is not a power of two from 8 to 2048`);
  }
  if (header.numGTEsPerGT !== GTES_PER_GT) {
    throw new ImageFormatError('vmdk-gt-entries', `VMDK grain tables hold ${header.numGTEsPerGT} entries; only ${GTES_PER_GT} is valid`);
  }
}

/**
 * streamOptimized writers that stream put the grain directory at the end; the file then ends
 * with: footer marker (EOF-1536), a copy of the header with the real gdOffset (EOF-1024), and the
 * end-of-stream marker (EOF-512). All three must be well formed and agree with the first header.
 */
async function readFooter(source: RandomAccessSource, header: SparseHeader): Promise<SparseHeader> {
  if ((header.flags & FLAG_MARKERS) === 0) {
    throw new ImageFormatError('vmdk-footer', 'VMDK puts its grain directory at the end but has no stream markers; the file is malformed');
  }
  if (source.size < HEADER_SIZE + 3 * SECTOR || source.size % SECTOR !== 0) {
    throw new ImageFormatError('vmdk-footer', `VMDK of ${source.size} bytes cannot end with a footer; the file is truncated`);
  }
  const tail = await source.read(source.size - 3 * SECTOR, 3 * SECTOR);
  const footerMarker = parseMetadataMarker(tail.subarray(0, SECTOR));
  if (footerMarker.type !== MARKER_FOOTER || footerMarker.size !== 0 || footerMarker.numSectors !== 1n) {
    throw new ImageFormatError('vmdk-footer', 'VMDK footer marker is missing at 1536 bytes before the end; the file is truncated or damaged');
  }
  const eos = parseMetadataMarker(tail.subarray(2 * SECTOR));
  if (eos.type !== MARKER_EOS || eos.size !== 0 || eos.numSectors !== 0n) {
    throw new ImageFormatError('vmdk-end-of-stream', 'VMDK end-of-stream marker is missing in the last 512 bytes; the file is truncated or damaged');
  }
  const footerBlock = tail.subarray(SECTOR, 2 * SECTOR);
  if (footerBlock.readUInt32LE(0) !== VMDK_MAGIC) {
    throw new ImageFormatError('vmdk-footer', 'VMDK footer does not hold a sparse extent header (KDMV); the file is damaged');
  }
  const footer = parseSparseHeader(footerBlock);
  const mustAgree = ['version', 'flags', 'capacity', 'grainSize', 'descriptorOffset', 'descriptorSize', 'numGTEsPerGT', 'compressAlgorithm'] as const;
  const differing = mustAgree.filter((field) => footer[field] !== header[field]);
  if (differing.length > 0) {
    throw new ImageFormatError('vmdk-footer-mismatch', `VMDK footer disagrees with the header on ${differing.join(', ')}; the file is damaged`);
  }
  if (footer.gdOffset === GD_AT_END) {
    throw new ImageFormatError('vmdk-footer', 'VMDK footer does not say where the grain directory is; the file is damaged');
  }
  return footer;
}

async function readEmbeddedDescriptor(source: RandomAccessSource, header: SparseHeader): Promise<string> {
  if (header.descriptorOffset === 0n || header.descriptorSize === 0n) {
    throw new ImageFormatError(
      'vmdk-descriptor-missing',
      'VMDK has no embedded descriptor: it is one extent of a multi-file disk; export the disk as a single streamOptimized VMDK',
    );
  }
  if (header.descriptorSize * 512n > BigInt(MAX_DESCRIPTOR_BYTES)) {
    throw new ImageFormatError('vmdk-descriptor-size', `VMDK descriptor is larger than ${MAX_DESCRIPTOR_BYTES} bytes; export the disk as streamOptimized`);
  }
  const end = (header.descriptorOffset + header.descriptorSize) * 512n;
  if (end > BigInt(source.size)) {
    throw new ImageFormatError('vmdk-descriptor-offset', 'VMDK descriptor lies past the end of the file; the file is truncated');
  }
  const raw = await source.read(Number(header.descriptorOffset) * SECTOR, Number(header.descriptorSize) * SECTOR);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8');
}

async function readGrainDirectory(source: RandomAccessSource, layout: Layout): Promise<Uint32Array> {
  const gdOffset = layout.header.gdOffset;
  const gdBytes = layout.gtCount * 4;
  if (gdOffset * 512n < BigInt(layout.firstDataByte) || gdOffset * 512n + BigInt(gdBytes) > BigInt(source.size)) {
    throw new ImageFormatError('vmdk-gd-offset', `VMDK grain directory at sector ${gdOffset} is not inside the file; the file is truncated or damaged`);
  }
  const raw = await source.read(Number(gdOffset) * SECTOR, gdBytes);
  const gd = new Uint32Array(layout.gtCount);
  for (let i = 0; i < gd.length; i++) gd[i] = raw.readUInt32LE(i * 4);
  // Every table inside the file, and no two tables sharing bytes (valid writers never do that).
  const sorted = Uint32Array.from(gd.filter((entry) => entry !== 0)).sort();
  for (let i = 0; i < sorted.length; i++) {
    const byte = sorted[i] * SECTOR;
    if (byte < layout.firstDataByte || byte + GT_BYTES > source.size) {
      throw new ImageFormatError('vmdk-gt-offset', `VMDK grain table at sector ${sorted[i]} is not inside the file; the file is truncated or damaged`);
    }
    if (i > 0 && (sorted[i] - sorted[i - 1]) * SECTOR < GT_BYTES) {
      throw new ImageFormatError('vmdk-gt-overlap', `VMDK grain tables at sectors ${sorted[i - 1]} and ${sorted[i]} overlap; the file is damaged`);
    }
  }
  return gd;
}

/**
 * Reads and checks every grain table once at open, so a damaged table is refused before any
 * conversion starts. Tables that lie back to back (the usual layout) are fetched together.
 */
async function readAllGrainTables(
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

async function readGrainTable(source: RandomAccessSource, layout: Layout, gtSector: number, gtIndex: number): Promise<Uint32Array> {
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
      throw new ImageFormatError(
        'vmdk-grain-offset',
        `VMDK grain for virtual offset ${start} points at sector ${entry}, outside the file's data; the file is truncated or damaged`,
      );
    }
  }
  return table;
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
