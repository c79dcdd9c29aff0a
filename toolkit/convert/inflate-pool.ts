/**
 * Inflation of compressed units on worker threads (inflate-worker.ts), one batch per read step.
 *
 * Why not zlib's async API: it costs a threadpool round trip and a fresh stream per unit, which
 * for 64 KiB grains is slower than inflating synchronously on one core (measured: 9,600 grains
 * 1.2 s async vs 0.6 s sync). Workers inflate whole batches synchronously, in parallel, within
 * the caller's shared memory.
 */
import { availableParallelism } from 'os';
import { WorkerPool, workerModulePath, type WorkerReply } from '../workers/worker-pool';

/** A unit of a batch: compressed bytes at `offset` of the shared memory, kept bytes go to `outOffset`. */
export interface InflateUnit {
  offset: number;
  length: number;
  codec: 'deflate' | 'zlib';
  /** Inflation stops with 'too-large' past this many bytes. */
  unitSize: number;
  /** Bytes of the inflated unit to drop, then to keep. */
  skip: number;
  keep: number;
  outOffset: number;
}

export type InflateFailure = { index: number; kind: 'too-large' | 'corrupt' | 'short'; detail: string };

export class InflateBatchError extends Error {
  constructor(readonly failure: InflateFailure) {
    super(failure.detail);
  }
}


type InflateReply = WorkerReply & { failure?: InflateFailure };

// Each worker is a V8 isolate of its own (~10 MiB resident at least); more than four rarely pays
// for itself, since one conversion's reads and writes also want a core. The first batch starts
// the whole pool: an image with one compressed unit has thousands, and workers started together
// warm up in parallel instead of one after another.
const pool = new WorkerPool<InflateReply>('inflate', workerModulePath(__dirname, 'inflate-worker'), Math.max(1, Math.min(availableParallelism(), 4)), true);

/**
 * Inflates `units` in place: each unit's compressed bytes are read from `shared` at `offset` and
 * its kept bytes written to `shared` at `outOffset`. Nothing is copied between threads.
 */
export async function inflateSharedBatch(shared: SharedArrayBuffer, units: InflateUnit[]): Promise<void> {
  const reply = await pool.run({ shared, units });
  if (reply.failure) throw new InflateBatchError(reply.failure);
}
