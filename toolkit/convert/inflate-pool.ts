/**
 * Inflation of compressed units on worker threads, one batch per read step.
 *
 * Why not zlib's async API: it costs a threadpool round trip and a fresh stream per unit, which
 * for 64 KiB grains is slower than inflating synchronously on one core (measured: 9,600 grains
 * 1.2 s async vs 0.6 s sync). Workers inflate whole batches synchronously, in parallel, and hand
 * back one buffer per batch without copying.
 */
import { availableParallelism } from 'os';
import { WorkerPool, type WorkerReply } from '../workers/worker-pool';

export interface InflateUnit {
  /** Where the compressed bytes are in the batch buffer. */
  offset: number;
  length: number;
  codec: 'deflate' | 'zlib';
  /** Inflation stops with 'too-large' past this many bytes. */
  unitSize: number;
  /** Bytes of the inflated unit to drop, then to keep. */
  skip: number;
  keep: number;
}

export type InflateFailure = { index: number; kind: 'too-large' | 'corrupt' | 'short'; detail: string };

export class InflateBatchError extends Error {
  constructor(readonly failure: InflateFailure) {
    super(failure.detail);
  }
}

// Plain JavaScript, evaluated in the worker: works the same from compiled output and from ts-jest.
const WORKER_SOURCE = `
const { parentPort } = require('worker_threads');
const zlib = require('zlib');
function inflateUnit(input, unit) {
  const inflate = unit.codec === 'zlib' ? zlib.inflateSync : zlib.inflateRawSync;
  // Room past the unit: with none, zlib allocates a second output buffer just to learn the stream ended.
  return inflate(input, { maxOutputLength: unit.unitSize, chunkSize: Math.max(64, unit.unitSize + 64) });
}
function failureOf(error) {
  return { kind: error && error.code === 'ERR_BUFFER_TOO_LARGE' ? 'too-large' : 'corrupt', detail: String(error && error.message) };
}
parentPort.on('message', (message) => {
  if (message.shared) return inflateShared(message);
  const { id, packed, units } = message;
  let total = 0;
  for (const unit of units) total += unit.keep;
  // Not Buffer.allocUnsafe: a small one would be a slice of a shared pool, which cannot be transferred.
  const out = new Uint8Array(new ArrayBuffer(total));
  let position = 0;
  for (let index = 0; index < units.length; index++) {
    const unit = units[index];
    const input = new Uint8Array(packed, unit.offset, unit.length);
    let inflated;
    try {
      inflated = inflateUnit(input, unit);
    } catch (error) {
      parentPort.postMessage({ id, failure: { index, ...failureOf(error) } });
      return;
    }
    if (inflated.length < unit.skip + unit.keep) {
      parentPort.postMessage({ id, failure: { index, kind: 'short', detail: String(inflated.length) } });
      return;
    }
    out.set(inflated.subarray(unit.skip, unit.skip + unit.keep), position);
    position += unit.keep;
  }
  // The input goes back too: left in this worker, whose heap is tiny and rarely collected, dead
  // input buffers piled up to hundreds of MiB.
  parentPort.postMessage({ id, out: out.buffer }, [out.buffer, packed]);
  collectGarbage();
});
// Shared memory: compressed bytes are read from, and kept bytes written to, the caller's
// SharedArrayBuffer. Nothing is copied across threads and nothing is transferred back.
function inflateShared({ id, shared, units }) {
  const memory = new Uint8Array(shared);
  for (let index = 0; index < units.length; index++) {
    const unit = units[index];
    let inflated;
    try {
      inflated = inflateUnit(memory.subarray(unit.offset, unit.offset + unit.length), unit);
    } catch (error) {
      parentPort.postMessage({ id, failure: { index, ...failureOf(error) } });
      return;
    }
    if (inflated.length < unit.skip + unit.keep) {
      parentPort.postMessage({ id, failure: { index, kind: 'short', detail: String(inflated.length) } });
      return;
    }
    memory.set(inflated.subarray(unit.skip, unit.skip + unit.keep), unit.outOffset);
  }
  parentPort.postMessage({ id, done: true });
  collectGarbage();
}
`;

/** A unit of a shared-memory batch: compressed bytes at `offset`, kept bytes go to `outOffset`. */
export interface SharedInflateUnit extends InflateUnit {
  outOffset: number;
}

type InflateReply = WorkerReply & { out?: ArrayBuffer; failure?: InflateFailure };

// Each worker is a V8 isolate of its own (~10 MiB resident at least); more than four rarely pays
// for itself, since one conversion's reads and writes also want a core. The first batch starts
// the whole pool: an image with one compressed unit has thousands, and workers started together
// warm up in parallel instead of one after another.
const pool = new WorkerPool<InflateReply>('inflate', WORKER_SOURCE, Math.max(1, Math.min(availableParallelism(), 4)), true);

async function run(message: object, transfer: ArrayBuffer[]): Promise<Buffer | undefined> {
  const reply = await pool.run(message, transfer);
  if (reply.failure) throw new InflateBatchError(reply.failure);
  return reply.out ? Buffer.from(reply.out) : undefined;
}

/**
 * Inflates `units` (compressed ranges of `packed`) and returns their kept bytes concatenated in
 * order. `packed` is transferred to the worker: the caller must not use it afterwards.
 */
export async function inflateBatch(packed: ArrayBuffer, units: InflateUnit[]): Promise<Buffer> {
  return (await run({ packed, units }, [packed]))!;
}

/**
 * Inflates `units` in place: each unit's compressed bytes are read from `shared` at `offset` and
 * its kept bytes written to `shared` at `outOffset`. Nothing is copied between threads.
 */
export async function inflateSharedBatch(shared: SharedArrayBuffer, units: SharedInflateUnit[]): Promise<void> {
  await run({ shared, units }, []);
}
