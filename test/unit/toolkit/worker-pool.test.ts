/**
 * The worker pools must never keep a process alive once their work is answered: the inflate pool
 * starts all its workers on the first batch, and a worker that never got a batch used to hold
 * the process open (its port was ref'd again by the 'message' listener added after unref()).
 * Each case runs in a process of its own (the compiled output; global setup builds dist/) that
 * must exit by itself.
 */
import { execFile } from 'child_process';
import { join } from 'path';
import { promisify } from 'util';
import { deflateRawSync } from 'zlib';

const execFileAsync = promisify(execFile);
const INFLATE_POOL = join(__dirname, '../../../dist/toolkit/convert/inflate-pool.js');

/** Runs `script` in a fresh Node process; resolves to its stdout, or rejects if it has not exited after 20 s. */
async function runAlone(script: string): Promise<string> {
  const { stdout } = await execFileAsync(process.execPath, ['-e', script], { timeout: 20_000, killSignal: 'SIGKILL' });
  return stdout;
}

describe('worker pools let the process exit', () => {
  it('after one batch, with the workers that got none still idle', async () => {
    const packed = deflateRawSync(Buffer.alloc(4096, 7));
    const script = `
      const { inflateSharedBatch } = require(${JSON.stringify(INFLATE_POOL)});
      const packed = Buffer.from(${JSON.stringify(packed.toString('base64'))}, 'base64');
      const shared = new SharedArrayBuffer(packed.length + 4096);
      new Uint8Array(shared).set(packed, 0);
      const unit = { offset: 0, length: packed.length, codec: 'deflate', unitSize: 4096, skip: 0, keep: 4096, outOffset: packed.length };
      inflateSharedBatch(shared, [unit]).then(() => {
        const out = Buffer.from(shared, packed.length, 4096);
        console.log(out.every((byte) => byte === 7) ? 'inflated' : 'wrong bytes');
      });
    `;
    await expect(runAlone(script)).resolves.toBe('inflated\n');
  });

  it('after a batch that fails', async () => {
    const script = `
      const { inflateSharedBatch } = require(${JSON.stringify(INFLATE_POOL)});
      const shared = new SharedArrayBuffer(8192);
      new Uint8Array(shared).fill(0xff, 0, 64); // not a deflate stream
      const unit = { offset: 0, length: 64, codec: 'deflate', unitSize: 4096, skip: 0, keep: 4096, outOffset: 4096 };
      inflateSharedBatch(shared, [unit]).catch((error) => console.log('refused: ' + error.failure.kind));
    `;
    await expect(runAlone(script)).resolves.toBe('refused: corrupt\n');
  });
});
