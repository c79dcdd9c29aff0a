/**
 * The inflate pool's worker thread (see inflate-pool.ts): inflates each batch of units from the
 * caller's SharedArrayBuffer into the same memory. Nothing is copied across threads and nothing
 * is transferred back.
 *
 * Each unit is inflated through a zlib stream's native handle (writeSync into given memory, then
 * reset), one per codec and worker, straight to where its bytes belong. zlib's one-shot API
 * (inflateSync) builds a stream state and a 32 KiB window for every unit, allocates its output and
 * leaves it to be copied: measured on one core, twice the time per 64 KiB grain. The handle is
 * Node's own internal (zlib.js drives every stream through it); where it is missing, the one-shot
 * API is used.
 */
import { parentPort } from 'worker_threads';
import * as zlib from 'zlib';
import { collectGarbage } from '../workers/worker-gc';
import type { InflateFailure, InflateUnit } from './inflate-pool';

const { Z_FINISH } = zlib.constants;

/** Node's internal handle of a zlib stream: the parts of it used here. */
interface ZlibHandle {
  writeSync(flush: number, input: Uint8Array, inOffset: number, inLength: number, output: Uint8Array, outOffset: number, outLength: number): void;
  reset(): void;
  onerror?: (message: unknown) => void;
}

interface HandleInflater {
  handle: ZlibHandle;
  /** [output bytes left, input bytes left] after each writeSync. */
  state: Uint32Array;
  error: string | undefined;
}

type Failure = Omit<InflateFailure, 'index'>;

function handleInflater(codec: InflateUnit['codec']): HandleInflater | undefined {
  const stream = codec === 'zlib' ? new zlib.Inflate() : new zlib.InflateRaw();
  const internals = stream as unknown as { _handle?: Partial<ZlibHandle>; _writeState?: unknown };
  const handle = internals._handle;
  const state = internals._writeState;
  if (!handle || typeof handle.writeSync !== 'function' || typeof handle.reset !== 'function' || !(state instanceof Uint32Array)) return undefined;
  const inflater: HandleInflater = { handle: handle as ZlibHandle, state, error: undefined };
  handle.onerror = (message: unknown) => {
    inflater.error = String(message);
  };
  return inflater;
}

const inflaters: Partial<Record<InflateUnit['codec'], HandleInflater>> = {};
// IMAGING_INFLATE_ONE_SHOT=1 forces the one-shot API (tests compare the two).
let handlesWork = process.env.IMAGING_INFLATE_ONE_SHOT !== '1';

function inflaterFor(codec: InflateUnit['codec']): HandleInflater | undefined {
  if (!handlesWork) return undefined;
  const inflater = inflaters[codec] ?? (inflaters[codec] = handleInflater(codec));
  if (!inflater) handlesWork = false;
  return inflater;
}

const probe = Buffer.alloc(1);
let scratch = Buffer.alloc(0);

/** Writes the unit's kept bytes to memory at outOffset; returns a failure, or undefined. */
function inflateWithHandle(inflater: HandleInflater, memory: Buffer, unit: InflateUnit): Failure | undefined {
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

function inflateOneShot(memory: Buffer, unit: InflateUnit): Failure | undefined {
  const inflate = unit.codec === 'zlib' ? zlib.inflateSync : zlib.inflateRawSync;
  let inflated: Buffer;
  try {
    // Room past the unit: with none, zlib allocates a second output buffer just to learn the stream ended.
    inflated = inflate(memory.subarray(unit.offset, unit.offset + unit.length), { maxOutputLength: unit.unitSize, chunkSize: Math.max(64, unit.unitSize + 64) });
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    return { kind: code === 'ERR_BUFFER_TOO_LARGE' ? 'too-large' : 'corrupt', detail: String(message) };
  }
  if (inflated.length < unit.skip + unit.keep) return { kind: 'short', detail: String(inflated.length) };
  memory.set(inflated.subarray(unit.skip, unit.skip + unit.keep), unit.outOffset);
  return undefined;
}

interface InflateRequest {
  id: number;
  shared: SharedArrayBuffer;
  units: InflateUnit[];
}

parentPort?.on('message', ({ id, shared, units }: InflateRequest) => {
  const memory = Buffer.from(shared);
  for (let index = 0; index < units.length; index++) {
    const unit = units[index];
    const inflater = inflaterFor(unit.codec);
    const failure = inflater ? inflateWithHandle(inflater, memory, unit) : inflateOneShot(memory, unit);
    if (failure) {
      parentPort?.postMessage({ id, failure: { index, ...failure } });
      return;
    }
  }
  parentPort?.postMessage({ id, done: true });
  collectGarbage();
});
