/**
 * Runs read steps in parallel and hands their bytes out strictly in virtual order.
 *
 * Reads start ahead of the consumer while two limits hold: at most `concurrency` reads in
 * flight, and at most `memoryLimitBytes` of fetched-but-unconsumed bytes (read buffers plus
 * inflated units). Each read step reads and inflates into a slab from a pool; the slab goes back
 * to the pool when the consumer asks for what comes after the step's chunks, so a consumer must
 * be done with a chunk's bytes by then (see DiskImageWriter).
 */
import type { VirtualChunk } from '../formats/format';
import type { RandomAccessSource } from '../io/source';
import { throwIfCancelled, unlessCancelled } from './cancellation';
import { loadStep, slabBytesOf, type ReadStepOf } from './load-step';
import type { ReadStep } from './read-plan';
import { SlabPool } from './slab-pool';

export interface OrderedFetchOptions {
  concurrency: number;
  memoryLimitBytes: number;
  signal?: AbortSignal;
  /** Consecutive data chunks of one read are joined up to this size, so writers see few large chunks. */
  joinChunksUpTo?: number;
  /** Bytes of one reusable slab: the plan's largest read plus its largest inflated output. */
  slabBytes: number;
}

interface Pending {
  cost: number;
  result: Promise<VirtualChunk[]>;
  /** The step's memory, back to the pool once its chunks are consumed. */
  slab?: SharedArrayBuffer;
}

export async function* fetchInOrder(
  steps: AsyncIterable<ReadStep>,
  source: RandomAccessSource,
  options: OrderedFetchOptions,
): AsyncGenerator<VirtualChunk> {
  const iterator = steps[Symbol.asyncIterator]();
  const queue: Pending[] = [];
  const maxQueued = options.concurrency * 4 + 16;
  let held: ReadStep | undefined; // pulled from the plan but waiting for memory
  let exhausted = false;
  let stopped = false;
  let planError: unknown;
  let bytesHeld = 0;
  let readsInFlight = 0;
  const slabs = new SlabPool(options.slabBytes);

  const startReads = async (): Promise<void> => {
    while (!exhausted && !stopped && queue.length < maxQueued && readsInFlight < options.concurrency) {
      if (!held) {
        const next = await iterator.next();
        if (next.done) {
          exhausted = true;
          return;
        }
        held = next.value;
      }
      const step = held;
      if (step.kind === 'zero') {
        held = undefined;
        queue.push({ cost: 0, result: Promise.resolve([{ offset: step.start, zeroLength: step.length }]) });
        continue;
      }
      const need = slabBytesOf(step);
      // Always allow one step when nothing is held, so an oversize step cannot stall everything.
      if (bytesHeld > 0 && bytesHeld + need > options.memoryLimitBytes) return;
      held = undefined;
      const slab = slabs.take(need);
      const cost = need; // untouched bytes of a slab (a raw read inflates nothing) are never resident
      bytesHeld += cost;
      readsInFlight++;
      const result = runRead(step, slab, source, options.joinChunksUpTo ?? 8 * 1024 * 1024).finally(() => {
        readsInFlight--;
        // A finished read frees a slot: start the next one now rather than when the consumer catches up.
        void pump();
      });
      result.catch(() => undefined); // surfaced when the consumer reaches it
      queue.push({ cost, result, slab });
    }
  };

  // The plan iterator must not be advanced by two callers at once; pump() serialises startReads.
  let pumping: Promise<void> | undefined;
  let pumpAgain = false;
  const pump = (): Promise<void> => {
    if (pumping) {
      pumpAgain = true;
      return pumping;
    }
    pumping = (async () => {
      do {
        pumpAgain = false;
        await startReads();
      } while (pumpAgain && !exhausted && !stopped);
    })()
      .catch((error: unknown) => {
        // The block map itself failed (a refused table, a failed metadata read).
        planError ??= error;
        exhausted = true;
      })
      .finally(() => {
        pumping = undefined;
      });
    return pumping;
  };

  try {
    for (;;) {
      throwIfCancelled(options.signal);
      await unlessCancelled(pump(), options.signal);
      const head = queue.shift();
      if (!head) {
        if (planError !== undefined) throw planError;
        if (exhausted) return;
        continue;
      }
      const chunks = await unlessCancelled(head.result, options.signal);
      for (const chunk of chunks) {
        throwIfCancelled(options.signal);
        yield chunk;
      }
      // The consumer asked for more, so it is done with the step's bytes.
      bytesHeld -= head.cost;
      if (head.slab) slabs.give(head.slab);
    }
  } finally {
    stopped = true;
    // Reads still in flight are abandoned, not awaited: one may hang, and cancellation must not.
    // Their results are dropped (each has a catch), and every source tolerates a read racing close().
    const closePlan = (pumping ?? Promise.resolve()).then(() => iterator.return?.(undefined));
    closePlan.catch(() => undefined);
  }
}

async function runRead(step: ReadStepOf, slab: SharedArrayBuffer, source: RandomAccessSource, joinUpTo: number): Promise<VirtualChunk[]> {
  return joinDataChunks(await loadStep(step, slab, source), joinUpTo);
}

/** Pieces at least this big are not copied to be joined (a VHD block, a run of qcow2 clusters). */
const JOIN_PIECES_BELOW = 256 * 1024;

/** A big piece is worth no copy: it is joined only to a piece it already continues in memory. */
function worthJoining(previous: Buffer, next: Buffer): boolean {
  if (previous.buffer === next.buffer && previous.byteOffset + previous.length === next.byteOffset) return true;
  return previous.length < JOIN_PIECES_BELOW && next.length < JOIN_PIECES_BELOW;
}

/** Joins runs of small data chunks (64 KiB grains) into larger ones. */
function joinDataChunks(chunks: VirtualChunk[], joinUpTo: number): VirtualChunk[] {
  const out: VirtualChunk[] = [];
  let run: Buffer[] = [];
  let runStart = 0;
  let runLength = 0;
  const flush = (): void => {
    if (run.length === 0) return;
    out.push({ offset: runStart, data: joined(run, runLength) });
    run = [];
    runLength = 0;
  };
  for (const chunk of chunks) {
    if (!('data' in chunk)) {
      flush();
      out.push(chunk);
      continue;
    }
    if (run.length > 0 && (runLength + chunk.data.length > joinUpTo || !worthJoining(run[run.length - 1], chunk.data))) flush();
    if (run.length === 0) runStart = chunk.offset;
    run.push(chunk.data);
    runLength += chunk.data.length;
  }
  flush();
  return out;
}

/** Pieces that already sit side by side in one buffer (inflated units of a batch) are joined by a view, not a copy. */
function joined(pieces: Buffer[], length: number): Buffer {
  const first = pieces[0];
  let end = first.byteOffset + first.length;
  for (let i = 1; i < pieces.length; i++) {
    if (pieces[i].buffer !== first.buffer || pieces[i].byteOffset !== end) return Buffer.concat(pieces, length);
    end += pieces[i].length;
  }
  return Buffer.from(first.buffer, first.byteOffset, length);
}
