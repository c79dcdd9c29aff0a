import type { RandomAccessSource } from '../io/source';

/**
 * The block map: ordered, contiguous extents covering the virtual disk from 0 to virtualSize.
 * Conversion is format-independent because every reader reduces its format to this.
 */
export type Extent =
  | { kind: 'zero'; start: number; length: number }
  /** `length` bytes of the virtual disk are stored verbatim at `sourceOffset`. */
  | { kind: 'data'; start: number; length: number; sourceOffset: number }
  /**
   * `length` bytes of the virtual disk are stored compressed in `sourceLength` bytes at
   * `sourceOffset`. `codec` is 'deflate' (raw, qcow2) or 'zlib' (with header, VMDK grains).
   * The decompressed stream may be longer than `length` only by padding the format allows;
   * `skip` bytes at the start of the decompressed data are dropped first (a grain that
   * straddles the extent's start).
   */
  | {
      kind: 'compressed';
      start: number;
      length: number;
      sourceOffset: number;
      sourceLength: number;
      codec: 'deflate' | 'zlib';
      /** Size of the whole decompressed unit (cluster or grain); used to bound inflation. */
      unitSize: number;
      skip?: number;
      /** Set when `sourceLength` is only an upper bound: the frame finds the stream in the bytes once they are read. */
      frame?: CompressedFrame;
    };

export type CompressedExtent = Extent & { kind: 'compressed' };

/**
 * How a compressed unit's stream is found inside source bytes that the reader could only bound
 * in advance: its tables say where a unit starts, and the unit's own bytes say how long it is.
 * The format that knows the framing implements it; the engine calls it once the bytes are in
 * memory, so the data is read once, never a second time just to learn the sizes.
 */
export interface CompressedFrame {
  /**
   * `bytes[at]` holds `extent`'s first source byte; returns where its compressed stream lies in
   * `bytes`. Throws ImageFormatError when the framing does not hold.
   */
  locate(extent: CompressedExtent, bytes: Buffer, at: number): { at: number; length: number };
}

export type FormatName = 'raw' | 'vmdk' | 'vhd' | 'vhdx' | 'qcow2' | 'ova';

export interface ImageInfo {
  format: FormatName;
  /** e.g. 'streamOptimized', 'monolithicSparse', 'dynamic', 'fixed', 'v3' */
  subformat?: string;
  virtualSize: number;
  /** Bytes of the source file. */
  fileSize: number;
  /** Bytes of virtual disk that are stored (not zero/unallocated), when known. */
  allocatedSize?: number;
  /** Format-specific details worth showing (cluster size, grain size, creator...). */
  details?: Record<string, string | number | boolean>;
}

export interface ReaderOptions {
  /** Refuse images that declare a larger virtual size (bytes). */
  maxVirtualSize: number;
}

/** An opened, checked disk image. */
export interface DiskImageReader {
  readonly info: ImageInfo;
  /** Yields extents in virtual order; they cover [0, info.virtualSize) without gaps or overlaps. */
  blockMap(): AsyncIterable<Extent>;
  close(): Promise<void>;
}

/** One module per format: how to recognise it and how to open it. */
export interface DiskFormat {
  readonly name: FormatName;
  /** True when the first bytes (at least 4 KiB when the file is that long) and the size look like this format. */
  sniff(head: Buffer, source: RandomAccessSource): Promise<boolean>;
  /** Parses and checks the headers and tables; throws ImageFormatError on anything unsafe. */
  open(source: RandomAccessSource, options: ReaderOptions): Promise<DiskImageReader>;
}

export const DEFAULT_MAX_VIRTUAL_SIZE = 16 * 1024 ** 4; // 16 TiB, EC2's largest volume

/** Bytes of the virtual disk in order, as the converter hands them to a writer. */
export type VirtualChunk =
  | { offset: number; data: Buffer }
  | { offset: number; zeroLength: number };

/** One module per output format: consumes the virtual disk in order and writes the file to a sink. */
export interface DiskImageWriter {
  readonly name: 'raw' | 'vmdk' | 'vhd' | 'vhd-fixed' | 'ova';
  /**
   * `chunks` are contiguous, in order, and cover [0, virtualSize). Zero chunks need not be
   * materialised; data chunks may still contain zeros (a writer may detect and skip them).
   * A data chunk's bytes are the writer's only until it asks for the next chunk: the converter
   * then reuses that memory, so a writer copies what it keeps longer.
   */
  write(input: { virtualSize: number; chunks: AsyncIterable<VirtualChunk> }, sink: import('../io/sink').ByteSink): Promise<void>;
}
