/**
 * Translation of one L2 table into block-map pieces (spec: "Cluster mapping" and "Extended L2
 * Entries"). Entries are read as two 32-bit halves because offsets reach bit 55, beyond what a
 * JavaScript number holds exactly; BigInt is used only for the rarer compressed descriptors.
 */
import type { Extent } from '../format';
import { refusal } from '../safety-checks';
import { qcow2Checks } from './checks';
import type { Qcow2Layout } from './layout';
import { SUBCLUSTERS_PER_CLUSTER } from './layout';

const TWO_32 = 2 ** 32;
const SECTOR = 512;

/** Bit 62 of an L2 entry (bit 30 of its high half). */
const COMPRESSED_FLAG_HI = 0x40000000;
/** Bits 56..61 are reserved in a standard descriptor. */
const STANDARD_RESERVED_HI = 0x3f000000;
/** Bits 1..8 are reserved in a standard descriptor; bit 0 is the zero flag. */
const STANDARD_RESERVED_LO = 0x000001fe;
const ZERO_FLAG_LO = 0x1;
/** Bits 9..55 hold the host cluster offset. */
const OFFSET_HI = 0x00ffffff;
const OFFSET_LO = 0xfffffe00;

/** Bits 0..8 and 56..62 of an L1 entry are reserved; bit 63 is the "copied" hint. */
const L1_RESERVED_HI = 0x7f000000;
const L1_RESERVED_LO = 0x000001ff;

/** Offset field of an L1 entry (bits 9..55); 0 means the L2 table is not allocated. */
export function l1EntryOffset(hi: number, lo: number, index: number): number {
  if ((hi & L1_RESERVED_HI) !== 0 || (lo & L1_RESERVED_LO) !== 0) {
    throw refusal(qcow2Checks.l1Entry, `qcow2 L1 entry ${index} has reserved bits set`);
  }
  return (hi & OFFSET_HI) * TWO_32 + ((lo & OFFSET_LO) >>> 0);
}

export type PieceSink = (piece: Extent) => void;

/**
 * Emits the pieces for entries [first, end) of `table`, whose entry 0 maps guest offset
 * `guestStart`. The last cluster may be cut short by the end of the virtual disk.
 */
export function mapL2Entries(layout: Qcow2Layout, table: Buffer, first: number, end: number, guestStart: number, emit: PieceSink): void {
  const { clusterSize, virtualSize, l2EntrySize } = layout;
  for (let i = first; i < end; i++) {
    const at = i * l2EntrySize;
    const guest = guestStart + i * clusterSize;
    const length = Math.min(clusterSize, virtualSize - guest);
    const hi = table.readUInt32BE(at);
    const lo = table.readUInt32BE(at + 4);
    if (layout.extendedL2) {
      mapExtendedEntry(layout, hi, lo, table.readUInt32BE(at + 8), table.readUInt32BE(at + 12), guest, length, emit);
    } else {
      mapStandardEntry(layout, hi, lo, guest, length, emit);
    }
  }
}

function mapStandardEntry(layout: Qcow2Layout, hi: number, lo: number, guest: number, length: number, emit: PieceSink): void {
  if (hi & COMPRESSED_FLAG_HI) {
    emit(compressedPiece(layout, hi, lo, guest, length));
    return;
  }
  checkStandardReserved(hi, lo, guest, false);
  const host = hostOffset(layout, hi, lo, guest);
  if (lo & ZERO_FLAG_LO) {
    if (layout.version < 3) {
      throw refusal(qcow2Checks.zeroFlagInV2, `qcow2 version 2 image has a zero-flagged cluster at guest offset ${guest}`);
    }
    emit({ kind: 'zero', start: guest, length });
  } else if (host === 0) {
    // Unallocated, and there is no backing file: reads as zeros.
    emit({ kind: 'zero', start: guest, length });
  } else {
    emitData(layout, host, guest, length, emit);
  }
}

function mapExtendedEntry(
  layout: Qcow2Layout,
  hi: number,
  lo: number,
  zeroBits: number,
  allocBits: number,
  guest: number,
  length: number,
  emit: PieceSink,
): void {
  if (hi & COMPRESSED_FLAG_HI) {
    // Compressed clusters have no subclusters; their bitmap is reserved.
    if (zeroBits !== 0 || allocBits !== 0) {
      throw refusal(
        qcow2Checks.l2EntryReservedBits,
        `qcow2 compressed cluster at guest offset ${guest} has a non-zero subcluster bitmap`,
      );
    }
    emit(compressedPiece(layout, hi, lo, guest, length));
    return;
  }
  // With extended L2 the zero flag lives in the bitmap, so bit 0 is reserved too.
  checkStandardReserved(hi, lo, guest, true);
  const host = hostOffset(layout, hi, lo, guest);
  if ((zeroBits & allocBits) !== 0 || (host === 0 && allocBits !== 0)) {
    throw refusal(
      qcow2Checks.subclusterBitmap,
      `qcow2 subcluster bitmap at guest offset ${guest} is invalid (a subcluster is both allocated and zero, or allocated without a host cluster)`,
    );
  }
  if (allocBits === 0) {
    emit({ kind: 'zero', start: guest, length });
    return;
  }
  const sub = layout.subclusterSize;
  for (let k = 0; k < SUBCLUSTERS_PER_CLUSTER && k * sub < length; k++) {
    const subLength = Math.min(sub, length - k * sub);
    if ((allocBits >>> k) & 1) emitData(layout, host + k * sub, guest + k * sub, subLength, emit);
    else emit({ kind: 'zero', start: guest + k * sub, length: subLength });
  }
}

function checkStandardReserved(hi: number, lo: number, guest: number, zeroFlagReserved: boolean): void {
  const reservedLo = zeroFlagReserved ? STANDARD_RESERVED_LO | ZERO_FLAG_LO : STANDARD_RESERVED_LO;
  if ((hi & STANDARD_RESERVED_HI) !== 0 || (lo & reservedLo) !== 0) {
    throw refusal(qcow2Checks.l2EntryReservedBits, `qcow2 L2 entry for guest offset ${guest} has reserved bits set`);
  }
}

function hostOffset(layout: Qcow2Layout, hi: number, lo: number, guest: number): number {
  const host = (hi & OFFSET_HI) * TWO_32 + ((lo & OFFSET_LO) >>> 0);
  if (host % layout.clusterSize !== 0) {
    throw refusal(
      qcow2Checks.l2EntryAlignment,
      `qcow2 L2 entry for guest offset ${guest} points to host offset ${host}, which is not cluster aligned`,
    );
  }
  return host;
}

/**
 * A data cluster must start inside the file. A file may end inside its last cluster (qemu
 * does not always write a cluster's zero tail); qemu reads that missing tail as zeros, and so
 * do we.
 */
function emitData(layout: Qcow2Layout, host: number, guest: number, length: number, emit: PieceSink): void {
  if (host >= layout.fileSize) {
    throw refusal(
      qcow2Checks.dataClusterPastEof,
      `qcow2 data for guest offset ${guest} is at host offset ${host}, past the end of the ${layout.fileSize}-byte file`,
    );
  }
  const stored = Math.min(length, layout.fileSize - host);
  emit({ kind: 'data', start: guest, length: stored, sourceOffset: host });
  if (stored < length) emit({ kind: 'zero', start: guest + stored, length: length - stored });
}

/**
 * Compressed descriptor: with x = 62 - (cluster_bits - 8), bits 0..x-1 are the byte offset of
 * the deflate stream and bits x..61 the number of 512-byte sectors it spans beyond the first.
 */
function compressedPiece(layout: Qcow2Layout, hi: number, lo: number, guest: number, length: number): Extent {
  const entry = (BigInt(hi) << 32n) | BigInt(lo >>> 0);
  const sizeShift = BigInt(62 - (layout.clusterBits - 8));
  const sizeMask = (1n << BigInt(layout.clusterBits - 8)) - 1n;
  const offsetField = entry & ((1n << sizeShift) - 1n);
  if (offsetField >> 56n !== 0n) {
    throw refusal(qcow2Checks.l2EntryReservedBits, `qcow2 compressed cluster at guest offset ${guest} has reserved offset bits set`);
  }
  const offset = Number(offsetField);
  const sectors = Number((entry >> sizeShift) & sizeMask) + 1;
  // The stream starts inside its first sector; the sector count covers from that sector's start.
  const declaredLength = sectors * SECTOR - (offset % SECTOR);
  if (offset >= layout.fileSize) {
    throw refusal(
      qcow2Checks.compressedClusterPastEof,
      `qcow2 compressed data for guest offset ${guest} is at host offset ${offset}, past the end of the ${layout.fileSize}-byte file`,
    );
  }
  return {
    kind: 'compressed',
    start: guest,
    length,
    sourceOffset: offset,
    // The last compressed cluster may end in a sector the file does not fully contain.
    sourceLength: Math.min(declaredLength, layout.fileSize - offset),
    codec: 'deflate',
    unitSize: layout.clusterSize,
  };
}
