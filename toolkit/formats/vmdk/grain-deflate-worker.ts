/**
 * The grain-deflate pool's worker thread (see grain-deflate-pool.ts): deflates a batch of grains
 * and lays it out as a streamOptimized VMDK wants it (grain marker, zlib stream, zero padding to a
 * sector, per grain), ready to be written as one buffer.
 */
import { parentPort } from 'worker_threads';
import * as zlib from 'zlib';
import { collectGarbage } from '../../workers/worker-gc';
import type { GrainBatch } from './grain-deflate-pool';

const SECTOR = 512;
const MARKER = 12;
const SAMPLE = 4096;
const log2 = new Float64Array(SAMPLE + 1);
for (let n = 1; n <= SAMPLE; n++) log2[n] = Math.log2(n);
const counts = new Uint32Array(256);

/** Shannon entropy (bits per byte) of bytes[at, at + SAMPLE). */
function entropy(bytes: Uint8Array, at: number): number {
  counts.fill(0);
  for (let i = at; i < at + SAMPLE; i++) counts[bytes[i]]++;
  let sum = 0;
  for (let b = 0; b < 256; b++) if (counts[b] > 0) sum += counts[b] * (log2[SAMPLE] - log2[counts[b]]);
  return sum / SAMPLE;
}

/**
 * True when deflate would store the grain anyway: three samples look like random bytes, and an
 * 8 KiB stretch does not shrink at level 1 (so no short repeats either). Such grains (compressed
 * or encrypted files, random fill) cost deflate as much time as any grain, only to be emitted as
 * stored blocks; level 0 emits the same stored blocks some 25x faster.
 */
function incompressible(view: Uint8Array): boolean {
  if (view.length < 4 * SAMPLE) return false;
  for (const at of [0, (view.length >> 1) - (SAMPLE >> 1), view.length - SAMPLE]) if (entropy(view, at) < 7.8) return false;
  const probe = view.subarray(view.length >> 2, (view.length >> 2) + 2 * SAMPLE);
  return zlib.deflateRawSync(probe, { level: 1 }).length >= probe.length - 16;
}

/** Laid-out bytes of the grains if none compressed at all (stored blocks: 5 bytes per 16 KiB, zlib header and trailer). */
function worstCase(lengths: number[]): number {
  let total = 0;
  for (const length of lengths) total += Math.ceil((MARKER + length + 5 * Math.ceil(length / 16384) + 64) / SECTOR) * SECTOR;
  return total;
}

function layOut(id: number, { input, lengths, lbas, level, storeIncompressible, output }: GrainBatch): void {
  const packed: Buffer[] = new Array(lengths.length);
  let total = 0;
  let at = 0;
  for (let i = 0; i < lengths.length; i++) {
    // One output chunk per grain: deflate's worst case for a grain is a little over the grain.
    const grain = new Uint8Array(input, at, lengths[i]);
    const data = zlib.deflateSync(grain, { level: storeIncompressible && incompressible(grain) ? 0 : level, chunkSize: lengths[i] + 1024 });
    at += lengths[i];
    packed[i] = data;
    total += Math.ceil((MARKER + data.length) / SECTOR) * SECTOR;
  }
  const out = output && output.byteLength >= total ? output : new ArrayBuffer(Math.max(total, worstCase(lengths)));
  const bytes = new Uint8Array(out, 0, total);
  const view = new DataView(out);
  const sectors = new Uint32Array(lengths.length);
  let position = 0;
  for (let i = 0; i < packed.length; i++) {
    sectors[i] = position / SECTOR;
    view.setBigUint64(position, BigInt(lbas[i]), true);
    view.setUint32(position + 8, packed[i].length, true);
    bytes.set(packed[i], position + MARKER);
    const end = position + Math.ceil((MARKER + packed[i].length) / SECTOR) * SECTOR;
    // The padding after each grain must read as zeros (a reused buffer holds old bytes).
    bytes.fill(0, position + MARKER + packed[i].length, end);
    position = end;
  }
  parentPort?.postMessage({ id, out, total, sectors, input }, [out, input]);
}

parentPort?.on('message', (message: GrainBatch & { id: number }) => {
  try {
    layOut(message.id, message);
    collectGarbage();
  } catch (error) {
    parentPort?.postMessage({ id: message.id, error: String((error as Error)?.message ?? error) });
  }
});
