/**
 * Test helper: turns any reader's block map into the raw virtual disk, so a format reader can
 * be checked byte for byte against `qemu-img convert -O raw` without the convert engine.
 * It also checks the block-map contract itself (ordered, contiguous, covering, in bounds),
 * because a reader that breaks it would otherwise only fail later in the converter.
 */
import { inflateRawSync, inflateSync } from 'zlib';
import { compressedPayload } from '../../toolkit/formats/compressed-payload';
import type { DiskImageReader, Extent } from '../../toolkit/formats/format';
import type { RandomAccessSource } from '../../toolkit/io/source';

export interface MaterializeOptions {
  /** Refuse to build disks larger than this (tests only want small ones). Default 1 GiB. */
  maxBytes?: number;
}

export async function materialize(
  reader: DiskImageReader,
  source: RandomAccessSource,
  options: MaterializeOptions = {},
): Promise<Buffer> {
  const virtualSize = reader.info.virtualSize;
  const maxBytes = options.maxBytes ?? 1024 ** 3;
  if (virtualSize > maxBytes) throw new Error(`virtual size ${virtualSize} is larger than the test limit ${maxBytes}`);
  const out = Buffer.alloc(virtualSize);
  let next = 0;
  for await (const extent of reader.blockMap()) {
    checkPlacement(extent, next, virtualSize, source);
    if (extent.kind === 'data') {
      const bytes = await source.read(extent.sourceOffset, extent.length);
      bytes.copy(out, extent.start);
    } else if (extent.kind === 'compressed') {
      const bytes = await source.read(extent.sourceOffset, extent.sourceLength);
      const payload = compressedPayload(extent, bytes, 0);
      const packed = bytes.subarray(payload.at, payload.at + payload.length);
      const inflate = extent.codec === 'zlib' ? inflateSync : inflateRawSync;
      const unpacked = inflate(packed, { maxOutputLength: Math.max(extent.unitSize, 1) });
      const skip = extent.skip ?? 0;
      if (unpacked.length < skip + extent.length) {
        throw new Error(`compressed extent at ${extent.start} inflates to ${unpacked.length} bytes, needs ${skip + extent.length}`);
      }
      unpacked.copy(out, extent.start, skip, skip + extent.length);
    }
    // zero extents: the buffer is already zero
    next = extent.start + extent.length;
  }
  if (next !== virtualSize) throw new Error(`block map ends at ${next}, virtual size is ${virtualSize}`);
  return out;
}

function checkPlacement(extent: Extent, expectedStart: number, virtualSize: number, source: RandomAccessSource): void {
  if (extent.start !== expectedStart) {
    throw new Error(`extent starts at ${extent.start}, expected ${expectedStart} (gap or overlap)`);
  }
  if (!(extent.length > 0) || extent.start + extent.length > virtualSize) {
    throw new Error(`extent [${extent.start}, +${extent.length}) is empty or beyond virtual size ${virtualSize}`);
  }
  if (extent.kind === 'data' && extent.sourceOffset + extent.length > source.size) {
    throw new Error(`data extent at ${extent.start} points past the end of ${source.name}`);
  }
  if (extent.kind === 'compressed' && extent.sourceOffset + extent.sourceLength > source.size) {
    throw new Error(`compressed extent at ${extent.start} points past the end of ${source.name}`);
  }
}

/** Counts extents by kind; handy for asserting that zeros were really skipped. */
export async function extentSummary(reader: DiskImageReader): Promise<Record<Extent['kind'], number>> {
  const counts = { zero: 0, data: 0, compressed: 0 };
  for await (const extent of reader.blockMap()) counts[extent.kind] += extent.length;
  return counts;
}
