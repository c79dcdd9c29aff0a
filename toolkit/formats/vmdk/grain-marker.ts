/**
 * The marker in front of each compressed grain of a streamOptimized VMDK: the grain's LBA
 * (uint64, in sectors) and the size of the zlib stream that follows (uint32). The grain tables
 * give only where a marker starts, so the reader hands out each compressed grain with an upper
 * bound on its bytes (up to the next grain, qemu's limit, or the end of the file) and the
 * marker is checked when those bytes have been read for the grain's data anyway: the data is
 * fetched once, never a second time just to learn the sizes.
 */
import type { CompressedExtent, CompressedFrame } from '../format';
import { refusal } from '../safety-checks';
import { vmdkChecks } from './checks';
import { GRAIN_MARKER_SIZE, SECTOR } from './header';

/** qemu's bound for one compressed grain; deflate never needs more than this for incompressible data. */
export const COMPRESSED_GRAIN_FACTOR = 2;

/** The most bytes a compressed grain of `grainBytes` may occupy in the file, marker included. */
export function maxFramedGrainBytes(grainBytes: number): number {
  return GRAIN_MARKER_SIZE + grainBytes * COMPRESSED_GRAIN_FACTOR;
}

export interface FramedGrain {
  /** File offset of the marker. */
  sourceOffset: number;
  /** Bytes from the marker on that may belong to this grain (the bound the reader worked out). */
  sourceLength: number;
  /** The LBA (in sectors) the marker must name. */
  lba: number;
  /** Bytes of one grain. */
  grainBytes: number;
}

/**
 * Checks the marker at `bytes[at]` (the first byte of `grain`'s source range) and returns where
 * its zlib stream lies in `bytes`. Refuses a marker naming another grain, a size of 0 or over
 * qemu's bound, and a size running into the next grain or past the end of the file.
 */
export function grainMarkerPayload(grain: FramedGrain, bytes: Buffer, at: number): { at: number; length: number } {
  const sector = grain.sourceOffset / SECTOR;
  const grainSectors = grain.grainBytes / SECTOR;
  if (grain.sourceLength < GRAIN_MARKER_SIZE || at + GRAIN_MARKER_SIZE > bytes.length) {
    throw refusal(vmdkChecks.grainOffset, `VMDK compressed grain at sector ${sector} runs past the end of the file; the file is truncated`);
  }
  const lba = bytes.readBigUInt64LE(at);
  const size = bytes.readUInt32LE(at + 8);
  if (lba !== BigInt(grain.lba)) {
    throw refusal(
      vmdkChecks.grainMarkerLba,
      `VMDK grain marker at sector ${sector} is for sector ${lba}, not for grain ${grain.lba / grainSectors}; the file is damaged`,
    );
  }
  const maxCompressed = grain.grainBytes * COMPRESSED_GRAIN_FACTOR;
  if (size === 0 || size > maxCompressed) {
    throw refusal(
      vmdkChecks.grainMarkerSize,
      `VMDK compressed grain at sector ${sector} claims ${size} bytes; a ${grain.grainBytes}-byte grain may take 1 to ${maxCompressed}`,
    );
  }
  if (GRAIN_MARKER_SIZE + size > grain.sourceLength) {
    throw refusal(
      vmdkChecks.grainMarkerSize,
      `VMDK compressed grain at sector ${sector} claims ${size} bytes, more than the ${grain.sourceLength - GRAIN_MARKER_SIZE} before the next grain or the end of the file; the file is damaged or truncated`,
    );
  }
  return { at: at + GRAIN_MARKER_SIZE, length: size };
}

/**
 * The frame a streamOptimized VMDK's compressed extent carries: the engine hands it the grain's
 * bytes, and it checks the marker (which must name `lba`) and says where the zlib stream is.
 * One per compressed grain; the extent supplies the rest (its bound, its grain size).
 */
export class GrainMarkerFrame implements CompressedFrame {
  constructor(readonly lba: number) {}

  locate(extent: CompressedExtent, bytes: Buffer, at: number): { at: number; length: number } {
    return grainMarkerPayload(
      { sourceOffset: extent.sourceOffset, sourceLength: extent.sourceLength, lba: this.lba, grainBytes: extent.unitSize },
      bytes,
      at,
    );
  }
}
