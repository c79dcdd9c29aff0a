/**
 * Any format in, any format out, in one streaming pass: the reader's block map drives parallel,
 * memory-bounded reads of the source, and the writer receives the virtual disk in order. Zero
 * extents are never read; nothing touches a scratch disk.
 */
import { ImageFormatError } from '../errors';
import type { DiskImageReader, DiskImageWriter, FormatName, ImageInfo, VirtualChunk } from '../formats/format';
import { DEFAULT_MAX_VIRTUAL_SIZE } from '../formats/format';
import { isWriterName, loadWriter, openImage } from '../formats/registry';
import type { ByteSink } from '../io/sink';
import type { RandomAccessSource } from '../io/source';
import { ConversionCancelledError, throwIfCancelled } from './cancellation';
import { checkedBlockMap } from './checked-block-map';
import { fetchInOrder } from './ordered-fetch';
import { canWritePositionally, writePositionally } from './positional-write';
import { DEFAULT_READ_PLAN, planReads } from './read-plan';

export interface ConvertImageOptions {
  source: RandomAccessSource;
  sink: ByteSink;
  output: DiskImageWriter['name'];
  claimedFormat?: FormatName;
  maxVirtualSize?: number;
  /** The setting maxVirtualSize comes from, named in the refusal so an operator knows what bounds it. */
  maxVirtualSizeSetting?: string;
  /** Bound on fetched-but-not-yet-written bytes. Default 256 MiB. */
  memoryLimitBytes?: number;
  /** Source reads in flight at once. Default 8. */
  readConcurrency?: number;
  /** Called as the writer takes the disk: `done` of `total` virtual bytes. */
  onProgress?(done: number, total: number): void;
  signal?: AbortSignal;
}

export interface ConvertImageResult {
  info: ImageInfo;
  bytesWritten: number;
}

export const DEFAULT_MEMORY_LIMIT = 256 * 1024 * 1024;

/**
 * An upper bound on the bytes any writer makes of a disk of `virtualSize` bytes, for sizing an
 * upload's parts before the output exists. Above the disk itself: a VMDK's grain markers (12 of
 * every 64 KiB grain, whose deflate may grow incompressible data by 0.04%) and tables, a VHD's
 * sector bitmaps (512 B per 2 MiB block), BAT and footers, an OVA's tar headers and descriptor.
 */
export function outputSizeBound(virtualSize: number): number {
  return Math.ceil(virtualSize * 1.02) + 64 * 1024 * 1024;
}

/**
 * Converts the image in `source` into `sink`. The sink is finished on success and aborted on any
 * failure (including cancellation), so a failed conversion leaves no partial output behind.
 */
export async function convertImage(options: ConvertImageOptions): Promise<ConvertImageResult> {
  let reader: DiskImageReader;
  try {
    throwIfCancelled(options.signal);
    if (!isWriterName(options.output)) throw new Error(`no writer for output format ${options.output}`); // before any reading
    reader = await openImage(options.source, { claimedFormat: options.claimedFormat, maxVirtualSize: options.maxVirtualSize ?? DEFAULT_MAX_VIRTUAL_SIZE });
  } catch (error) {
    await options.sink.abort().catch(() => undefined);
    throw namingSizeSetting(error, options.maxVirtualSizeSetting);
  }
  try {
    return await convertOpenedImage(reader, options);
  } catch (error) {
    throw namingSizeSetting(error, options.maxVirtualSizeSetting);
  } finally {
    await reader.close();
  }
}

/** A size refusal names the setting the limit came from, so an operator knows what bounds it. */
function namingSizeSetting(error: unknown, setting: string | undefined): unknown {
  if (!setting || !(error instanceof ImageFormatError) || !/virtual-size-(limit|too-large)$|^qcow2\.virtual-size$/.test(error.check)) return error;
  return new ImageFormatError(error.check, `${error.message} (${setting})`);
}

/** The conversion itself, for a caller that already holds an opened reader of `options.source`. */
export async function convertOpenedImage(reader: DiskImageReader, options: Omit<ConvertImageOptions, 'claimedFormat'>): Promise<ConvertImageResult> {
  const { source, signal } = options;
  const sink = new FinishOnceSink(options.sink);
  try {
    throwIfCancelled(signal);
    const writer = await loadWriter(options.output);
    const maxVirtualSize = options.maxVirtualSize ?? DEFAULT_MAX_VIRTUAL_SIZE;
    const { virtualSize } = reader.info;
    if (!Number.isSafeInteger(virtualSize) || virtualSize < 0 || virtualSize > maxVirtualSize) {
      throw new ImageFormatError('virtual-size-too-large', `the image's virtual disk is ${virtualSize} bytes, larger than the ${maxVirtualSize}-byte limit`);
    }
    const memoryLimitBytes = options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT;
    const extents = checkedBlockMap(reader.blockMap(), virtualSize, source.size);
    if (options.output === 'raw' && canWritePositionally(options.sink)) {
      const plan = positionalReadPlanFor(memoryLimitBytes);
      const concurrency = options.readConcurrency ?? 8;
      const end = await writePositionally(planReads(extents, plan), source, options.sink, {
        concurrency,
        // The slabs are all the memory this path holds; the rest of the bound is left to the process.
        memoryLimitBytes: Math.max(plan.maxReadBytes + plan.maxInflatedBytes!, Math.floor(memoryLimitBytes / 2)),
        slabBytes: plan.maxReadBytes + plan.maxInflatedBytes!,
        signal,
        onProgress: options.onProgress,
        virtualSize,
      });
      throwIfCancelled(signal);
      // Trailing zeros after the last written byte: a file sink leaves them as a hole.
      await sink.writeZeros(virtualSize - end);
      const { size } = await sink.finish();
      return { info: reader.info, bytesWritten: size };
    }
    const orderedPlan = readPlanFor(memoryLimitBytes);
    const chunks = fetchInOrder(planReads(extents, orderedPlan), source, {
      concurrency: options.readConcurrency ?? 8,
      // Fetched bytes are not all the process holds: the writer and the sink (an S3 upload keeps
      // whole parts) buffer too, and freed read buffers linger until collected. An eighth of the
      // bound (eight 4 MiB reads by default) keeps reads well ahead and leaves the rest to them.
      memoryLimitBytes: Math.max(Math.floor(memoryLimitBytes / 8), 64 * 1024),
      signal,
      joinChunksUpTo: Math.min(8 * 1024 * 1024, Math.max(64 * 1024, Math.floor(memoryLimitBytes / 16))),
      slabBytes: orderedPlan.maxReadBytes + orderedPlan.maxInflatedBytes!,
    });
    await writer.write({ virtualSize, chunks: reportingProgress(chunks, virtualSize, options.onProgress) }, sink);
    throwIfCancelled(signal);
    const { size } = await sink.finish();
    return { info: reader.info, bytesWritten: size };
  } catch (error) {
    await sink.abort().catch(() => undefined);
    // A writer may surface cancellation as its own error (an aborted upload); report what happened.
    if (signal?.aborted && !(error instanceof ConversionCancelledError) && !(error instanceof ImageFormatError)) {
      throw new ConversionCancelledError();
    }
    throw error;
  }
}

/**
 * Reads for the positional path land in reused slabs of maxReadBytes + maxInflatedBytes: a few
 * MiB per read is plenty for throughput, and keeps the slabs (all this path holds) small.
 */
function positionalReadPlanFor(memoryLimitBytes: number): typeof DEFAULT_READ_PLAN {
  const maxReadBytes = Math.max(64 * 1024, Math.min(2 * 1024 * 1024, Math.floor(memoryLimitBytes / 32)));
  return { ...DEFAULT_READ_PLAN, maxReadBytes, maxInflatedBytes: 2 * maxReadBytes };
}

/** Small memory limits need small reads, or one read would exceed the limit by itself. */
function readPlanFor(memoryLimitBytes: number): typeof DEFAULT_READ_PLAN {
  const maxReadBytes = Math.max(64 * 1024, Math.min(4 * 1024 * 1024, Math.floor(memoryLimitBytes / 64)));
  // Steps that inflate little each let several batches inflate at once within the fetch window.
  return { ...DEFAULT_READ_PLAN, maxReadBytes, maxInflatedBytes: 2 * maxReadBytes };
}

async function* reportingProgress(
  chunks: AsyncIterable<VirtualChunk>,
  total: number,
  onProgress: ConvertImageOptions['onProgress'],
): AsyncGenerator<VirtualChunk> {
  let done = 0;
  for await (const chunk of chunks) {
    yield chunk;
    // The writer asked for the next chunk, so it is done with this one.
    done += 'data' in chunk ? chunk.data.length : chunk.zeroLength;
    onProgress?.(done, total);
  }
}

/**
 * Writers are free to finish the sink themselves or leave it to us; either way it is finished
 * once and its result reported. A head the inner sink can patch stays patchable through it.
 */
class FinishOnceSink implements ByteSink {
  private finished?: Promise<{ size: number }>;
  readonly holdHead?: (length: number) => void;
  readonly patchHead?: (offset: number, chunk: Buffer) => Promise<void>;
  constructor(private readonly inner: ByteSink) {
    // Undefined when the inner sink lacks them: having the methods is what announces the capability.
    this.holdHead = inner.holdHead?.bind(inner);
    this.patchHead = inner.patchHead?.bind(inner);
  }
  get name(): string {
    return this.inner.name;
  }
  write(chunk: Buffer): Promise<void> {
    return this.inner.write(chunk);
  }
  writeZeros(length: number): Promise<void> {
    return this.inner.writeZeros(length);
  }
  finish(): Promise<{ size: number }> {
    this.finished ??= this.inner.finish();
    return this.finished;
  }
  abort(): Promise<void> {
    return this.inner.abort();
  }
}
