/**
 * Reads VHDX files (dynamic and fixed; differencing refused) into a block map whose contents
 * match qemu's vhdx driver. Shape: header.ts (the on-disk structures) → checks.ts (the named
 * safety checks; layout.ts and block-table.ts apply them) → extent-map.ts → this reader.
 */
import type { RandomAccessSource } from '../../io/source';
import type { DiskImageReader, Extent, ImageInfo, ReaderOptions } from '../format';
import { validateBat, type BatGeometry } from './block-table';
import { vhdxExtents } from './extent-map';
import { readVhdxLayout } from './layout';

export { sniffVhdx } from './sniff';

export async function openVhdx(source: RandomAccessSource, options: ReaderOptions): Promise<DiskImageReader> {
  const layout = await readVhdxLayout(source, options);
  // Check every entry now, so a bad image is refused at open rather than part-way through a conversion.
  const allocatedSize = await validateBat(source, layout.geometry, layout.occupied);
  const info: ImageInfo = {
    format: 'vhdx',
    subformat: layout.subformat,
    virtualSize: layout.geometry.virtualSize,
    fileSize: source.size,
    allocatedSize,
    details: layout.details,
  };
  return new VhdxReader(info, source, layout.geometry);
}

class VhdxReader implements DiskImageReader {
  constructor(
    readonly info: ImageInfo,
    private readonly source: RandomAccessSource,
    private readonly geometry: BatGeometry,
  ) {}

  blockMap(): AsyncIterable<Extent> {
    return vhdxExtents(this.source, this.geometry);
  }

  async close(): Promise<void> {
    // The source belongs to the caller.
  }
}
