/**
 * A disk image of any format seen as its virtual disk: a random-access source over the reader's
 * block map, so inspection reads a VMDK, VHD(X), QCOW2 or OVA in place, with no conversion and
 * no scratch copy. Zero extents read as zeros, data extents are read from the image file,
 * compressed units are inflated (capped at their declared size) and the last few kept.
 *
 * The block map is checked as the converter checks it (ordered, contiguous, inside the file)
 * and held in memory as one small record per extent.
 */
import { checkedBlockMap } from '../convert/checked-block-map';
import { inflateExtent, type CompressedExtent } from '../convert/codec';
import type { DiskImageReader, Extent } from '../formats/format';
import { SourceRangeError, type RandomAccessSource } from '../io/source';

/** More extents than this (10 million: a 640 GiB image of 64 KiB units) is refused. */
const MAX_EXTENTS = 10_000_000;
const INFLATED_UNITS_KEPT = 32;

export class VirtualDiskSource implements RandomAccessSource {
  private readonly inflated = new Map<number, Promise<Buffer>>();

  private constructor(
    private readonly extents: Extent[],
    private readonly file: RandomAccessSource,
    readonly size: number,
    readonly name: string,
  ) {}

  /** Reads the whole block map of an opened image; `file` is the source the reader was opened on. */
  static async open(reader: DiskImageReader, file: RandomAccessSource): Promise<VirtualDiskSource> {
    const extents: Extent[] = [];
    for await (const extent of checkedBlockMap(reader.blockMap(), reader.info.virtualSize, file.size)) {
      const last = extents[extents.length - 1];
      if (extent.kind === 'zero' && last?.kind === 'zero') {
        last.length += extent.length;
        continue;
      }
      if (extents.length >= MAX_EXTENTS) throw new Error(`${file.name} has more than ${MAX_EXTENTS} extents; too fragmented to inspect in place`);
      extents.push({ ...extent });
    }
    return new VirtualDiskSource(extents, file, reader.info.virtualSize, `${file.name} (virtual disk)`);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new SourceRangeError(this.name, offset, length, this.size);
    }
    const out = Buffer.alloc(length);
    let index = this.extentAt(offset);
    let at = offset;
    while (at < offset + length) {
      const extent = this.extents[index++];
      const end = Math.min(offset + length, extent.start + extent.length);
      const within = at - extent.start;
      if (extent.kind === 'data') {
        (await this.file.read(extent.sourceOffset + within, end - at)).copy(out, at - offset);
      } else if (extent.kind === 'compressed') {
        (await this.unit(extent)).copy(out, at - offset, within, within + end - at);
      }
      at = end;
    }
    return out;
  }

  async close(): Promise<void> {
    // The image file belongs to whoever opened it.
  }

  /** Index of the extent holding `offset` (binary search; extents are contiguous from 0). */
  private extentAt(offset: number): number {
    let low = 0;
    let high = this.extents.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.extents[middle].start <= offset) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  private unit(extent: CompressedExtent): Promise<Buffer> {
    const cached = this.inflated.get(extent.start);
    if (cached) return cached;
    const pending = this.file.read(extent.sourceOffset, extent.sourceLength).then((packed) => inflateExtent(extent, packed));
    this.inflated.set(extent.start, pending);
    pending.catch(() => this.inflated.delete(extent.start));
    while (this.inflated.size > INFLATED_UNITS_KEPT) this.inflated.delete(this.inflated.keys().next().value as number);
    return pending;
  }
}
