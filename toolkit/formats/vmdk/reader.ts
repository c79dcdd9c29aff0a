/**
 * Reads a hosted sparse VMDK (monolithicSparse or streamOptimized) as a block map. Every
 * structure is checked before it is used: the header, the embedded descriptor (see
 * descriptor.ts), the footer when the grain directory is at the end, the grain directory, every
 * grain table, and every grain marker (grain-marker.ts, checked when the grain's bytes are read).
 * Shape: header.ts (the sparse header's fields) and descriptor.ts → checks.ts (the named safety
 * checks; layout.ts, grain-tables.ts and grain-marker.ts apply them) → extent-map.ts → this reader.
 * Model: qemu block/vmdk.c (vmdk_open_vmdk4, vmdk_read_extent), oslo.utils VMDKInspector;
 * written from the VMware VMDK 5.0 spec.
 */
import type { RandomAccessSource } from '../../io/source';
import type { DiskImageReader, Extent, ImageInfo, ReaderOptions } from '../format';
import { vmdkExtents, type GrainTables } from './extent-map';
import { readAllGrainTables, readGrainDirectory } from './grain-tables';
import { readVmdkLayout, type Layout } from './layout';

export { looksLikeVmdk } from './sniff';

/** Grain tables kept in memory after open by default; larger disks re-read them while mapping. */
const GT_CACHE_BYTES = 64 * 1024 * 1024;

export interface VmdkReaderOptions extends ReaderOptions {
  /** Bytes of grain tables kept from open for mapping (default 64 MiB); the rest are read again. */
  grainTableCacheBytes?: number;
}

export class VmdkReader implements DiskImageReader {
  private constructor(
    readonly info: ImageInfo,
    private readonly source: RandomAccessSource,
    private readonly layout: Layout,
    private readonly tables: GrainTables,
  ) {}

  static async open(source: RandomAccessSource, options: VmdkReaderOptions): Promise<VmdkReader> {
    const layout = await readVmdkLayout(source, options);
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
    return new VmdkReader(info, source, layout, { gd, cache, emptyTables });
  }

  blockMap(): AsyncIterable<Extent> {
    return vmdkExtents(this.source, this.layout, this.tables);
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

