/**
 * Writes fixed and dynamic VHDs to a sink.
 *
 * Both writers size the disk as current_size and mark the creator as 'win ' (Hyper-V), so
 * qemu, Hyper-V and Azure all take the size from current_size and a disk that is not a whole
 * CHS geometry round-trips unchanged. A virtual size that is not a multiple of 512 is padded with
 * zeros to the next sector, as qemu does for raw input.
 *
 * Dynamic layout: [footer copy][dynamic header][BAT][bitmap|block]...[footer]. The BAT precedes
 * the blocks it locates, yet whether a block is zero is only known once the stream has passed it
 * (chunks arrive in order, and a "data" chunk may still be all zeros). Two ways out:
 *  - Sparse, when the sink can patch its head (a file, an S3 upload: ByteSink.holdHead). The head
 *    goes out with every BAT entry unallocated. Each 2 MiB block is gathered in one reused buffer
 *    (zeros are only counted until its first non-zero byte), and only blocks holding a non-zero
 *    byte are appended, in disk order, as [bitmap|block]. The BAT is kept in memory meanwhile
 *    (4 bytes a block: 4 MiB at the 2040 GiB limit) and patched into the head after the footer is
 *    written. The file is the head plus the non-zero blocks, as with qemu-img convert -O vpc
 *    (zero stretches inside a block are written as zeros: holes in a file).
 *  - Fully allocated, when it cannot (a sink that hashes the bytes as they stream by): block k
 *    lives at a position computed from k alone and the BAT is written up front from that formula.
 *    Zero chunks become writeZeros, so a file sink leaves holes for them, but the file is
 *    virtual-size large.
 * Both are valid dynamic VHDs that Hyper-V, qemu and Azure tooling read. Blocks and the BAT are
 * sector-aligned, and the sector bitmap of every allocated block is all ones.
 */
import { randomBytes } from 'crypto';
import { canPatchHead, type ByteSink, type HeadPatchingSink } from '../../io/sink';
import { isAllZero, writeSkippingZeroBlocks } from '../../io/zeros';
import type { DiskImageWriter, VirtualChunk } from '../format';
import { VHD_BAT_UNALLOCATED, VHD_DYNAMIC_HEADER_SIZE, encodeVhdDynamicHeader, sectorBitmapSize } from './vhd-dynamic-header';
import { VHD_DISK_TYPE, VHD_FOOTER_SIZE, VHD_MAX_VIRTUAL_SIZE, encodeVhdFooter, vhdTimestamp } from './vhd-footer';

export const VHD_DYNAMIC_BLOCK_SIZE = 2 * 1024 * 1024;

export interface VhdWriterOptions {
  /** Identity and creation time written into the footer; random and now by default. */
  uniqueId?: Buffer;
  now?: Date;
}

function roundUpToSector(size: number): number {
  return Math.ceil(size / 512) * 512;
}

function checkSize(virtualSize: number): number {
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) throw new RangeError(`invalid virtual size ${virtualSize}`);
  const size = roundUpToSector(virtualSize);
  if (size > VHD_MAX_VIRTUAL_SIZE) throw new RangeError(`a VHD holds at most 2040 GiB; this disk is ${virtualSize} bytes`);
  return size;
}

/**
 * Walks the chunks, checking they are contiguous and cover [0, virtualSize), and hands each
 * piece to `emit` split so that no piece crosses a multiple of `boundary`.
 */
async function forEachPiece(
  chunks: AsyncIterable<VirtualChunk>,
  virtualSize: number,
  boundary: number,
  emit: (offset: number, piece: { data: Buffer } | { zeroLength: number }) => Promise<void>,
): Promise<void> {
  let next = 0;
  for await (const chunk of chunks) {
    if (chunk.offset !== next) throw new Error(`VHD writer: chunk at ${chunk.offset}, expected ${next}`);
    const length = 'data' in chunk ? chunk.data.length : chunk.zeroLength;
    if (next + length > virtualSize) throw new Error(`VHD writer: chunk at ${chunk.offset} runs past the virtual size ${virtualSize}`);
    let done = 0;
    while (done < length) {
      const at = next + done;
      const take = Math.min(length - done, boundary - (at % boundary));
      await emit(at, 'data' in chunk ? { data: chunk.data.subarray(done, done + take) } : { zeroLength: take });
      done += take;
    }
    next += length;
  }
  if (next !== virtualSize) throw new Error(`VHD writer: chunks end at ${next}, virtual size is ${virtualSize}`);
}

export function createVhdFixedWriter(options: VhdWriterOptions = {}): DiskImageWriter {
  return {
    name: 'vhd-fixed',
    async write({ virtualSize, chunks }, sink: ByteSink): Promise<void> {
      const size = checkSize(virtualSize);
      await forEachPiece(chunks, virtualSize, Number.MAX_SAFE_INTEGER, async (_offset, piece) => {
        if ('data' in piece) await sink.write(piece.data);
        else await sink.writeZeros(piece.zeroLength);
      });
      if (size > virtualSize) await sink.writeZeros(size - virtualSize);
      await sink.write(encodeVhdFooter({
        diskType: VHD_DISK_TYPE.fixed,
        dataOffset: null,
        size,
        uniqueId: options.uniqueId ?? randomBytes(16),
        timestamp: vhdTimestamp(options.now ?? new Date()),
      }));
    },
  };
}

/** Where the dynamic writer puts things, all derived from the virtual size. */
export function dynamicVhdLayout(size: number, blockSize = VHD_DYNAMIC_BLOCK_SIZE) {
  const blocks = Math.ceil(size / blockSize);
  const headerOffset = VHD_FOOTER_SIZE;
  const tableOffset = headerOffset + VHD_DYNAMIC_HEADER_SIZE;
  const tableBytes = roundUpToSector(blocks * 4);
  const firstBlock = tableOffset + tableBytes;
  const bitmapSize = sectorBitmapSize(blockSize);
  const stride = bitmapSize + blockSize;
  return { blocks, headerOffset, tableOffset, tableBytes, firstBlock, bitmapSize, stride, blockSize };
}

type DynamicLayout = ReturnType<typeof dynamicVhdLayout>;

interface DynamicInput {
  virtualSize: number;
  chunks: AsyncIterable<VirtualChunk>;
  layout: DynamicLayout;
  footer: Buffer;
  header: Buffer;
  /** The sector bitmap of an allocated block: every bit set, every sector present. */
  bitmap: Buffer;
}

export function createVhdDynamicWriter(options: VhdWriterOptions = {}): DiskImageWriter {
  return {
    name: 'vhd',
    async write({ virtualSize, chunks }, sink: ByteSink): Promise<void> {
      const size = checkSize(virtualSize);
      const layout = dynamicVhdLayout(size);
      const input: DynamicInput = {
        virtualSize,
        chunks,
        layout,
        footer: encodeVhdFooter({
          diskType: VHD_DISK_TYPE.dynamic,
          dataOffset: layout.headerOffset,
          size,
          uniqueId: options.uniqueId ?? randomBytes(16),
          timestamp: vhdTimestamp(options.now ?? new Date()),
        }),
        header: encodeVhdDynamicHeader({ tableOffset: layout.tableOffset, maxTableEntries: layout.blocks, blockSize: layout.blockSize }),
        bitmap: Buffer.alloc(layout.bitmapSize, 0xff),
      };
      if (canPatchHead(sink)) await writeSparse(input, sink);
      else await writeFullyAllocated(input, sink);
    },
  };
}

/** Only the non-zero blocks, appended in disk order; the BAT is patched in at the end. */
async function writeSparse({ virtualSize, chunks, layout, footer, header, bitmap }: DynamicInput, sink: HeadPatchingSink): Promise<void> {
  sink.holdHead(layout.firstBlock);
  const bat = Buffer.alloc(layout.tableBytes, 0xff); // every entry VHD_BAT_UNALLOCATED
  await sink.write(footer);
  await sink.write(header);
  await sink.write(bat);
  const block = new BlockAssembler(layout.blockSize);
  let nextBlockAt = layout.firstBlock;
  await forEachPiece(chunks, virtualSize, layout.blockSize, async (offset, piece) => {
    block.add(piece);
    const end = offset + ('data' in piece ? piece.data.length : piece.zeroLength);
    if (end % layout.blockSize !== 0 && end !== virtualSize) return;
    // The block is complete (the last one may be short: take() pads it, sector padding included).
    const bytes = block.take();
    if (!bytes) return;
    bat.writeUInt32BE(nextBlockAt / 512, Math.floor(offset / layout.blockSize) * 4);
    await sink.write(bitmap);
    // Zero stretches inside the block stay holes in a file, as qemu-img leaves them.
    await writeSkippingZeroBlocks(bytes, sink);
    nextBlockAt += layout.stride;
  });
  await sink.write(footer);
  await sink.patchHead(layout.tableOffset, bat);
}

/** Every block allocated, at a place computed from its index, so the BAT can go first. */
async function writeFullyAllocated({ virtualSize, chunks, layout, footer, header, bitmap }: DynamicInput, sink: ByteSink): Promise<void> {
  await sink.write(footer);
  await sink.write(header);
  await writeBat(sink, layout);
  await forEachPiece(chunks, virtualSize, layout.blockSize, async (offset, piece) => {
    if (offset % layout.blockSize === 0) await sink.write(bitmap);
    if ('data' in piece) await sink.write(piece.data);
    else await sink.writeZeros(piece.zeroLength);
  });
  // Pad the last block to full size (the sector padding of an odd size is part of it).
  const lastBlockUsed = virtualSize - (layout.blocks - 1) * layout.blockSize;
  if (layout.blocks > 0) await sink.writeZeros(layout.blockSize - lastBlockUsed);
  await sink.write(footer);
}

/**
 * Gathers one block from its pieces in a buffer reused block after block. Until the first
 * non-zero byte arrives nothing is copied, only counted, so an all-zero block costs one
 * comparison of its data and no writes. A block that arrives whole, in one piece (the usual
 * case: reads are larger than blocks), is not copied at all.
 */
class BlockAssembler {
  private readonly buffer: Buffer;
  /** Bytes of the block received so far. */
  private received = 0;
  /** Whether buffer[0, received) holds the block, i.e. a non-zero byte has arrived. */
  private materialised = false;
  /** The block when it came whole in one piece of data with a non-zero byte: handed out as it is. */
  private whole: Buffer | undefined;

  constructor(blockSize: number) {
    this.buffer = Buffer.allocUnsafe(blockSize);
  }

  add(piece: { data: Buffer } | { zeroLength: number }): void {
    const length = 'data' in piece ? piece.data.length : piece.zeroLength;
    if (this.received === 0 && 'data' in piece && length === this.buffer.length) {
      this.received = length;
      if (!isAllZero(piece.data)) this.whole = piece.data;
      return;
    }
    if (!this.materialised) {
      if (!('data' in piece) || isAllZero(piece.data)) {
        this.received += length;
        return;
      }
      this.buffer.fill(0, 0, this.received);
      this.materialised = true;
    }
    if ('data' in piece) piece.data.copy(this.buffer, this.received);
    else this.buffer.fill(0, this.received, this.received + length);
    this.received += length;
  }

  /**
   * Ends the block: its full-size bytes, zero-padded, or undefined when it is all zeros. The
   * bytes are only valid until the next add() (a block that came whole: while its piece is).
   */
  take(): Buffer | undefined {
    const bytes = this.whole ?? (this.materialised ? this.buffer.fill(0, this.received) : undefined);
    this.received = 0;
    this.materialised = false;
    this.whole = undefined;
    return bytes;
  }
}

/** Block k is at firstBlock + k*stride; entries are in 512-byte sectors; the padding is unallocated. */
async function writeBat(sink: ByteSink, layout: DynamicLayout): Promise<void> {
  const entriesPerPiece = 64 * 1024;
  for (let first = 0; first * 4 < layout.tableBytes; first += entriesPerPiece) {
    const count = Math.min(entriesPerPiece, layout.tableBytes / 4 - first);
    const piece = Buffer.alloc(count * 4);
    for (let i = 0; i < count; i++) {
      const k = first + i;
      piece.writeUInt32BE(k < layout.blocks ? (layout.firstBlock + k * layout.stride) / 512 : VHD_BAT_UNALLOCATED, i * 4);
    }
    await sink.write(piece);
  }
}
