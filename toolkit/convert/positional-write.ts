/**
 * RAW output into a sink that can seek (a local file): the fast path.
 *
 * A raw disk's byte k is the virtual disk's byte k, so no step has to wait for the one before
 * it. Read steps run in parallel and each writes its own bytes at their virtual offsets as soon
 * as they are ready (qemu-img convert -W does the same). Zero extents, and zero blocks found
 * inside data, are never written: they stay holes in the fresh output file.
 *
 * Memory is a fixed set of slabs, one per step in flight, reused from step to step: the source
 * reads into a slab, inflate workers read compressed bytes from it and write inflated bytes into
 * it (shared memory, no copies between threads), and the sink writes from it. Nothing is
 * allocated per step, so the garbage collector has nothing to chase.
 */
import type { RandomAccessSource } from '../io/source';
import type { ByteSink } from '../io/sink';
import { isAllZero, ZERO_SCAN_BLOCK } from '../io/zeros';
import { ConversionCancelledError, throwIfCancelled, unlessCancelled } from './cancellation';
import { loadStep, slabBytesOf, type ReadStepOf } from './load-step';
import type { ReadStep } from './read-plan';
import { SlabPool } from './slab-pool';

export interface PositionalWriteOptions {
  /** Steps in flight at once. */
  concurrency: number;
  /** Bound on the bytes held by steps in flight (read + inflated bytes). */
  memoryLimitBytes: number;
  signal?: AbortSignal;
  onProgress?(done: number, total: number): void;
  virtualSize: number;
  /** Bytes of one reusable slab: the plan's largest read plus its largest inflated output. */
  slabBytes: number;
}

export type PositionalSink = ByteSink & Required<Pick<ByteSink, 'writeAt'>>;

export function canWritePositionally(sink: ByteSink): sink is PositionalSink {
  return typeof sink.writeAt === 'function';
}

export async function writePositionally(steps: AsyncIterable<ReadStep>, source: RandomAccessSource, sink: PositionalSink, options: PositionalWriteOptions): Promise<number> {
  const { signal } = options;
  const iterator = steps[Symbol.asyncIterator]();
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  let bytesHeld = 0;
  let done = 0;
  const written = { end: 0 };
  const pool = new SlabPool(options.slabBytes);
  let wake: (() => void) | undefined;
  const progress = (length: number): void => {
    done += length;
    options.onProgress?.(done, options.virtualSize);
  };
  const throwIfFailed = (): void => {
    if (failure) throw failure.error;
  };
  const onAbort = (): void => wake?.();
  signal?.addEventListener('abort', onAbort);

  try {
    for (;;) {
      throwIfCancelled(signal);
      throwIfFailed();
      const next = await unlessCancelled(iterator.next(), signal);
      if (next.done) break;
      const step = next.value;
      if (step.kind === 'zero') {
        progress(step.length);
        continue;
      }
      const need = slabBytesOf(step);
      // Wait for room: a slot and memory. One step always runs, so an oversize one cannot stall.
      while (inFlight.size > 0 && (inFlight.size >= options.concurrency || bytesHeld + need > options.memoryLimitBytes)) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        throwIfCancelled(signal);
        throwIfFailed();
      }
      const cost = need;
      bytesHeld += cost;
      const slab = pool.take(need);
      const task: Promise<void> = runStep(step, slab, source, sink, written)
        .then(() => {
          pool.give(slab);
          progress(stepLength(step));
        })
        .catch((error: unknown) => {
          failure ??= { error };
        })
        .finally(() => {
          bytesHeld -= cost;
          inFlight.delete(task);
          wake?.();
        });
      inFlight.add(task);
    }
    while (inFlight.size > 0) {
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      throwIfCancelled(signal);
      throwIfFailed();
    }
    throwIfFailed();
    // Where the last written byte ends: the caller appends the trailing zeros from there.
    return written.end;
  } catch (error) {
    // Steps still in flight are abandoned, not awaited (a read may hang, and cancellation must
    // not); the caller aborts the sink, which refuses their late writes.
    if (signal?.aborted && !(error instanceof ConversionCancelledError)) throw new ConversionCancelledError();
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    const closePlan = Promise.resolve().then(() => iterator.return?.(undefined));
    closePlan.catch(() => undefined);
  }
}

function stepLength(step: ReadStepOf): number {
  let length = 0;
  for (const item of step.items) length += item.length;
  return length;
}

interface Written {
  end: number;
}

async function runStep(step: ReadStepOf, slab: SharedArrayBuffer, source: RandomAccessSource, sink: PositionalSink, written: Written): Promise<void> {
  for (const chunk of await loadStep(step, slab, source)) {
    if ('data' in chunk) await writeNonZero(sink, chunk.offset, chunk.data, written);
  }
}

/** Writes the blocks of `data` that are not all zeros; zero blocks stay holes (the raw writer's granularity, so both paths leave the same holes). */
async function writeNonZero(sink: PositionalSink, offset: number, data: Buffer, written: Written): Promise<void> {
  const write = (from: number, to: number): Promise<void> => {
    written.end = Math.max(written.end, offset + to);
    return sink.writeAt(offset + from, data.subarray(from, to));
  };
  let runStart = -1;
  for (let at = 0; at < data.length; at += ZERO_SCAN_BLOCK) {
    const end = Math.min(at + ZERO_SCAN_BLOCK, data.length);
    const isZero = isAllZero(data.subarray(at, end));
    if (!isZero && runStart < 0) runStart = at;
    if (isZero && runStart >= 0) {
      await write(runStart, at);
      runStart = -1;
    }
  }
  if (runStart >= 0) await write(runStart, data.length);
}
