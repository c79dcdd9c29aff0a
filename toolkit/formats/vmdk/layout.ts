/**
 * From the sparse header to the few numbers the grain walk needs: the header's own fields, the
 * footer when the grain directory is at the end, and the embedded descriptor, each checked
 * (checks.ts names every rule) before the next is read.
 * Spec: VMware "Virtual Disk Format 5.0", "Hosted Sparse Extent Header" and "Stream-Optimized
 * Compressed Sparse Extents"; model: qemu block/vmdk.c (vmdk_open_vmdk4).
 */
import type { RandomAccessSource } from '../../io/source';
import type { ReaderOptions } from '../format';
import { refusal } from '../safety-checks';
import { vmdkChecks } from './checks';
import { looksLikeVmdk } from './sniff';
import { checkDescriptorPolicy, MAX_DESCRIPTOR_BYTES, parseDescriptor, type AcceptedCreateType } from './descriptor';
import {
  COMPRESSION_DEFLATE,
  COMPRESSION_NONE,
  FLAG_COMPRESSED,
  FLAG_MARKERS,
  FLAG_NEWLINE_TEST,
  GD_AT_END,
  HEADER_SIZE,
  KNOWN_FLAGS,
  MARKER_EOS,
  MARKER_FOOTER,
  parseMetadataMarker,
  parseSparseHeader,
  SECTOR,
  VMDK_MAGIC,
  type SparseHeader,
} from './header';

/** Grain sizes (sectors) we accept: powers of two from 4 KiB to 1 MiB (VMware uses 64 KiB). */
const MIN_GRAIN_SECTORS = 8n;
const MAX_GRAIN_SECTORS = 2048n;
export const GTES_PER_GT = 512;
export const GT_BYTES = GTES_PER_GT * 4;

export interface Layout {
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

/**
 * Reads and checks everything before the grain directory. A text descriptor (shorter than a
 * header, and naming other files) is told apart first and refused with its reason.
 */
export async function readVmdkLayout(source: RandomAccessSource, options: ReaderOptions): Promise<Layout> {
  const head = await source.read(0, Math.min(HEADER_SIZE, source.size));
  if (!(head.length >= 4 && head.readUInt32LE(0) === VMDK_MAGIC)) {
    if (looksLikeVmdk(head)) await refuseDescriptorFile(source);
    throw refusal(vmdkChecks.magic, 'file does not start with a VMDK sparse extent header (KDMV)');
  }
  if (head.length < HEADER_SIZE) {
    throw refusal(vmdkChecks.truncated, `VMDK is ${source.size} bytes, shorter than its 512-byte header; the file is truncated`);
  }
  return readLayout(source, parseSparseHeader(head), options);
}

/** A standalone text descriptor names separate extent files; say what it is, then refuse it. */
async function refuseDescriptorFile(source: RandomAccessSource): Promise<never> {
  if (source.size > MAX_DESCRIPTOR_BYTES) {
    throw refusal(vmdkChecks.descriptorSize, `VMDK descriptor file is larger than ${MAX_DESCRIPTOR_BYTES} bytes; export the disk as streamOptimized`);
  }
  const text = (await source.read(0, source.size)).toString('utf8');
  checkDescriptorPolicy(parseDescriptor(text));
  throw refusal(
    vmdkChecks.descriptorFile,
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
    throw refusal(
      vmdkChecks.createTypeFlags,
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
    throw refusal(vmdkChecks.version, `VMDK sparse header version ${header.version} is not supported (1, 2 or 3 are)`);
  }
  if ((header.flags & ~KNOWN_FLAGS) !== 0) {
    throw refusal(vmdkChecks.flags, `VMDK header has unknown flags 0x${header.flags.toString(16)}; the file is not a disk we can read safely`);
  }
  if (
    (header.flags & FLAG_NEWLINE_TEST) !== 0 &&
    (header.singleEndLineChar !== 0x0a || header.nonEndLineChar !== 0x20 || header.doubleEndLineChar1 !== 0x0d || header.doubleEndLineChar2 !== 0x0a)
  ) {
    throw refusal(
      vmdkChecks.lineEndingTest,
      'VMDK header line-ending test failed: the file was altered by a text-mode (ASCII) transfer; upload it in binary mode',
    );
  }
  const compressed = (header.flags & FLAG_COMPRESSED) !== 0;
  const markers = (header.flags & FLAG_MARKERS) !== 0;
  const expectedAlgorithm = compressed ? COMPRESSION_DEFLATE : COMPRESSION_NONE;
  if (compressed !== markers || header.compressAlgorithm !== expectedAlgorithm) {
    throw refusal(
      vmdkChecks.compression,
      `VMDK header combines compression ${header.compressAlgorithm} with flags 0x${header.flags.toString(16)}; only uncompressed grains, or deflate grains with markers, are supported`,
    );
  }
  const maxSectors = BigInt(Math.floor(options.maxVirtualSize / SECTOR));
  if (header.capacity === 0n || header.capacity > maxSectors) {
    throw refusal(
      vmdkChecks.virtualSize,
      `VMDK declares a virtual size of ${header.capacity * 512n} bytes; accepted are 1 to ${options.maxVirtualSize} bytes`,
    );
  }
  const grain = header.grainSize;
  if (grain < MIN_GRAIN_SECTORS || grain > MAX_GRAIN_SECTORS || (grain & (grain - 1n)) !== 0n) {
    throw refusal(vmdkChecks.grainSize, `VMDK grain size of ${grain} sectors is not a power of two from 8 to 2048`);
  }
  if (header.numGTEsPerGT !== GTES_PER_GT) {
    throw refusal(vmdkChecks.gtEntries, `VMDK grain tables hold ${header.numGTEsPerGT} entries; only ${GTES_PER_GT} is valid`);
  }
}

/**
 * streamOptimized writers that stream put the grain directory at the end; the file then ends
 * with: footer marker (EOF-1536), a copy of the header with the real gdOffset (EOF-1024), and the
 * end-of-stream marker (EOF-512). All three must be well formed and agree with the first header.
 */
async function readFooter(source: RandomAccessSource, header: SparseHeader): Promise<SparseHeader> {
  if ((header.flags & FLAG_MARKERS) === 0) {
    throw refusal(vmdkChecks.footer, 'VMDK puts its grain directory at the end but has no stream markers; the file is malformed');
  }
  if (source.size < HEADER_SIZE + 3 * SECTOR || source.size % SECTOR !== 0) {
    throw refusal(vmdkChecks.footer, `VMDK of ${source.size} bytes cannot end with a footer; the file is truncated`);
  }
  const tail = await source.read(source.size - 3 * SECTOR, 3 * SECTOR);
  const footerMarker = parseMetadataMarker(tail.subarray(0, SECTOR));
  if (footerMarker.type !== MARKER_FOOTER || footerMarker.size !== 0 || footerMarker.numSectors !== 1n) {
    throw refusal(vmdkChecks.footer, 'VMDK footer marker is missing at 1536 bytes before the end; the file is truncated or damaged');
  }
  const eos = parseMetadataMarker(tail.subarray(2 * SECTOR));
  if (eos.type !== MARKER_EOS || eos.size !== 0 || eos.numSectors !== 0n) {
    throw refusal(vmdkChecks.endOfStream, 'VMDK end-of-stream marker is missing in the last 512 bytes; the file is truncated or damaged');
  }
  const footerBlock = tail.subarray(SECTOR, 2 * SECTOR);
  if (footerBlock.readUInt32LE(0) !== VMDK_MAGIC) {
    throw refusal(vmdkChecks.footer, 'VMDK footer does not hold a sparse extent header (KDMV); the file is damaged');
  }
  const footer = parseSparseHeader(footerBlock);
  const mustAgree = ['version', 'flags', 'capacity', 'grainSize', 'descriptorOffset', 'descriptorSize', 'numGTEsPerGT', 'compressAlgorithm'] as const;
  const differing = mustAgree.filter((field) => footer[field] !== header[field]);
  if (differing.length > 0) {
    throw refusal(vmdkChecks.footerMismatch, `VMDK footer disagrees with the header on ${differing.join(', ')}; the file is damaged`);
  }
  if (footer.gdOffset === GD_AT_END) {
    throw refusal(vmdkChecks.footer, 'VMDK footer does not say where the grain directory is; the file is damaged');
  }
  return footer;
}

async function readEmbeddedDescriptor(source: RandomAccessSource, header: SparseHeader): Promise<string> {
  if (header.descriptorOffset === 0n || header.descriptorSize === 0n) {
    throw refusal(
      vmdkChecks.descriptorMissing,
      'VMDK has no embedded descriptor: it is one extent of a multi-file disk; export the disk as a single streamOptimized VMDK',
    );
  }
  if (header.descriptorSize * 512n > BigInt(MAX_DESCRIPTOR_BYTES)) {
    throw refusal(vmdkChecks.descriptorSize, `VMDK descriptor is larger than ${MAX_DESCRIPTOR_BYTES} bytes; export the disk as streamOptimized`);
  }
  const end = (header.descriptorOffset + header.descriptorSize) * 512n;
  if (end > BigInt(source.size)) {
    throw refusal(vmdkChecks.descriptorOffset, 'VMDK descriptor lies past the end of the file; the file is truncated');
  }
  const raw = await source.read(Number(header.descriptorOffset) * SECTOR, Number(header.descriptorSize) * SECTOR);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8');
}

