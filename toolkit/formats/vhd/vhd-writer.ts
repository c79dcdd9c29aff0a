/**
 * Writes fixed and dynamic VHDs to a sequential sink.
 *
 * Both writers size the disk as current_size and mark the creator as 'win ' (Hyper-V), so
 * qemu, Hyper-V and Azure all take the size from current_size and a disk that is not a whole
 * CHS geometry round-trips unchanged. A virtual size that is not a multiple of 512 is padded with
 * zeros to the next sector, as qemu does for raw input.
 *
 * Dynamic layout: [footer copy][dynamic header][BAT][bitmap|block 0][bitmap|block 1]...[footer].
 * The BAT precedes the data, and a sequential sink cannot go back to fill it in, so whether a
 * block is zero would have to be known before the stream reaches it. It is not (chunks arrive in
 * order and a "data" chunk may still be all zeros), so every block is allocated: block k lives at
 * a position computed from k alone, and the BAT is written up front from that formula. Zero ranges
 * are handed to the sink as writeZeros, so a file sink leaves holes and the output stays sparse
 * on disk; on object storage the file is virtual-size large. Everything is still a valid dynamic
 * VHD that Hyper-V, qemu and Azure tooling read.
 */
import { randomBytes } from 'crypto';
import type { ByteSink } from '../../io/sink';
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

export function createVhdDynamicWriter(options: VhdWriterOptions = {}): DiskImageWriter {
  return {
    name: 'vhd',
    async write({ virtualSize, chunks }, sink: ByteSink): Promise<void> {
      const size = checkSize(virtualSize);
      const layout = dynamicVhdLayout(size);
      const footer = encodeVhdFooter({
        diskType: VHD_DISK_TYPE.dynamic,
        dataOffset: layout.headerOffset,
        size,
        uniqueId: options.uniqueId ?? randomBytes(16),
        timestamp: vhdTimestamp(options.now ?? new Date()),
      });
      await sink.write(footer);
      await sink.write(encodeVhdDynamicHeader({ tableOffset: layout.tableOffset, maxTableEntries: layout.blocks, blockSize: layout.blockSize }));
      await writeBat(sink, layout);

      // A set bitmap marks every sector of the block as present.
      const bitmap = Buffer.alloc(layout.bitmapSize, 0xff);
      await forEachPiece(chunks, virtualSize, layout.blockSize, async (offset, piece) => {
        if (offset % layout.blockSize === 0) await sink.write(bitmap);
        if ('data' in piece) await sink.write(piece.data);
        else await sink.writeZeros(piece.zeroLength);
      });
      // Pad the last block to full size (the sector padding of an odd size is part of it).
      const lastBlockUsed = virtualSize - (layout.blocks - 1) * layout.blockSize;
      if (layout.blocks > 0) await sink.writeZeros(layout.blockSize - lastBlockUsed);
      await sink.write(footer);
    },
  };
}

/** Block k is at firstBlock + k*stride; entries are in 512-byte sectors; the padding is unallocated. */
async function writeBat(sink: ByteSink, layout: ReturnType<typeof dynamicVhdLayout>): Promise<void> {
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
