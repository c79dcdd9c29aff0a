/**
 * Reads fixed and dynamic VHDs (Virtual PC / Hyper-V "VHD" v1.0) into a block map, with the
 * sizes and contents qemu's vpc driver gives them, and refuses anything unsafe or unsupported.
 * Shape: vhd-footer.ts and vhd-dynamic-header.ts (the on-disk fields) → checks.ts (the named
 * safety checks; layout.ts and block-table.ts apply them) → extent-map.ts → this reader.
 *
 * Layouts:
 *  - fixed:   [virtual disk bytes][footer]
 *  - dynamic: [footer copy][dynamic header]...[BAT]...[bitmap|block]...[footer]
 */
import type { RandomAccessSource } from '../../io/source';
import type { DiskImageReader, Extent, ImageInfo, ReaderOptions } from '../format';
import { vhdAllocatedBytes, vhdExtents } from './extent-map';
import { readVhdLayout, type VhdLayout } from './layout';

export { VHD_MAX_BAT_ENTRIES } from './layout';
export { sniffVhd } from './sniff';

export async function openVhd(source: RandomAccessSource, options: ReaderOptions): Promise<DiskImageReader> {
  const layout = await readVhdLayout(source, options);
  const info: ImageInfo = {
    format: 'vhd',
    subformat: layout.kind,
    virtualSize: layout.virtualSize,
    fileSize: source.size,
    allocatedSize: vhdAllocatedBytes(layout),
    details: layout.kind === 'dynamic' ? { ...layout.details, blockSize: layout.blockSize } : layout.details,
  };
  return new VhdReader(info, layout);
}

class VhdReader implements DiskImageReader {
  constructor(
    readonly info: ImageInfo,
    private readonly layout: VhdLayout,
  ) {}

  blockMap(): AsyncIterable<Extent> {
    return vhdExtents(this.layout);
  }

  async close(): Promise<void> {
    // The source belongs to the caller.
  }
}
