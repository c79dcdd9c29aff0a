/**
 * Inflation of compressed units on worker threads, one batch per read step.
 *
 * Why not zlib's async API: it costs a threadpool round trip and a fresh stream per unit, which
 * for 64 KiB grains is slower than inflating synchronously on one core (measured: 9,600 grains
 * 1.2 s async vs 0.6 s sync). Workers inflate whole batches synchronously, in parallel, within
 * the caller's shared memory.
 */
import { availableParallelism } from 'os';
import { WorkerPool, type WorkerReply } from '../workers/worker-pool';

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

// Plain JavaScript, evaluated in the worker: works the same from compiled output and from ts-jest.
// Compressed bytes are read from, and kept bytes written to, the caller's SharedArrayBuffer:
// nothing is copied across threads and nothing is transferred back.
//
// Each unit is inflated through a zlib stream's native handle (writeSync into given memory, then
// reset), one per codec and worker, straight to where its bytes belong. zlib's one-shot API
// (inflateSync) builds a stream state and a 32 KiB window for every unit, allocates its output
// and leaves it to be copied: measured on one core, twice the time per 64 KiB grain. The handle
// is Node's own internal (zlib.js drives every stream through it); where it is missing, the
// one-shot API is used.
const WORKER_SOURCE = `
const { parentPort } = require('worker_threads');
const zlib = require('zlib');
const { Z_FINISH } = zlib.constants;

function handleInflater(codec) {
  const stream = codec === 'zlib' ? new zlib.Inflate() : new zlib.InflateRaw();
  const handle = stream._handle;
  const state = stream._writeState;
  if (!handle || typeof handle.writeSync !== 'function' || typeof handle.reset !== 'function' || !(state instanceof Uint32Array)) return undefined;
  const inflater = { handle, state, error: undefined };
  handle.onerror = (message) => { inflater.error = String(message); };
  return inflater;
}
const inflaters = {};
// IMAGING_INFLATE_ONE_SHOT=1 forces the one-shot API (tests compare the two).
let handlesWork = process.env.IMAGING_INFLATE_ONE_SHOT !== '1';
function inflaterFor(codec) {
  if (!handlesWork) return undefined;
  const inflater = inflaters[codec] || (inflaters[codec] = handleInflater(codec));
  if (!inflater) handlesWork = false;
  return inflater;
}

const probe = Buffer.alloc(1);
let scratch = Buffer.alloc(0);

// Writes the unit's kept bytes to memory at outOffset; returns a failure, or undefined.
function inflateWithHandle(inflater, memory, unit) {
  const { handle, state } = inflater;
  // A whole unit goes straight to its place; a partly kept one through scratch memory.
  const direct = unit.skip === 0 && unit.keep === unit.unitSize;
  if (!direct && scratch.length < unit.unitSize) scratch = Buffer.allocUnsafe(unit.unitSize);
  const out = direct ? memory : scratch;
  const outOffset = direct ? unit.outOffset : 0;
  inflater.error = undefined;
  try {
    handle.writeSync(Z_FINISH, memory, unit.offset, unit.length, out, outOffset, unit.unitSize);
    if (inflater.error) return { kind: 'corrupt', detail: inflater.error };
    const produced = unit.unitSize - state[0];
    if (state[0] === 0) {
      // The unit's room is full: if the stream has one byte more, it inflates beyond its unit.
      const left = state[1];
      handle.writeSync(Z_FINISH, memory, unit.offset + unit.length - left, left, probe, 0, 1);
      if (inflater.error) return { kind: 'corrupt', detail: inflater.error };
      if (state[0] === 0) return { kind: 'too-large', detail: 'inflates past its unit' };
    }
    if (produced < unit.skip + unit.keep) return { kind: 'short', detail: String(produced) };
    if (!direct) memory.set(out.subarray(unit.skip, unit.skip + unit.keep), unit.outOffset);
    return undefined;
  } finally {
    handle.reset();
  }
}

function inflateOneShot(memory, unit) {
  const inflate = unit.codec === 'zlib' ? zlib.inflateSync : zlib.inflateRawSync;
  let inflated;
  try {
    // Room past the unit: with none, zlib allocates a second output buffer just to learn the stream ended.
    inflated = inflate(memory.subarray(unit.offset, unit.offset + unit.length), { maxOutputLength: unit.unitSize, chunkSize: Math.max(64, unit.unitSize + 64) });
  } catch (error) {
    return { kind: error && error.code === 'ERR_BUFFER_TOO_LARGE' ? 'too-large' : 'corrupt', detail: String(error && error.message) };
  }
  if (inflated.length < unit.skip + unit.keep) return { kind: 'short', detail: String(inflated.length) };
  memory.set(inflated.subarray(unit.skip, unit.skip + unit.keep), unit.outOffset);
  return undefined;
}

parentPort.on('message', ({ id, shared, units }) => {
  const memory = Buffer.from(shared);
  for (let index = 0; index < units.length; index++) {
    const unit = units[index];
    const inflater = inflaterFor(unit.codec);
    const failure = inflater ? inflateWithHandle(inflater, memory, unit) : inflateOneShot(memory, unit);
    if (failure) {
      parentPort.postMessage({ id, failure: { index, ...failure } });
      return;
    }
  }
  parentPort.postMessage({ id, done: true });
  collectGarbage();
});
`;

type InflateReply = WorkerReply & { failure?: InflateFailure };

// Each worker is a V8 isolate of its own (~10 MiB resident at least); more than four rarely pays
// for itself, since one conversion's reads and writes also want a core. The first batch starts
// the whole pool: an image with one compressed unit has thousands, and workers started together
// warm up in parallel instead of one after another.
const pool = new WorkerPool<InflateReply>('inflate', WORKER_SOURCE, Math.max(1, Math.min(availableParallelism(), 4)), true);

/**
 * Inflates `units` in place: each unit's compressed bytes are read from `shared` at `offset` and
 * its kept bytes written to `shared` at `outOffset`. Nothing is copied between threads.
 */
export async function inflateSharedBatch(shared: SharedArrayBuffer, units: InflateUnit[]): Promise<void> {
  const reply = await pool.run({ shared, units });
  if (reply.failure) throw new InflateBatchError(reply.failure);
}
