/**
 * The worker pools must never keep a process alive once their work is answered: the inflate pool
 * starts all its workers on the first batch, and a worker that never got a batch used to hold
 * the process open (its port was ref'd again by the 'message' listener added after unref()).
 * Each case runs in a process of its own (the compiled output; global setup builds dist/) that
 * must exit by itself.
 */
import { execFile } from 'child_process';
import { createHash } from 'crypto';
import { join } from 'path';
import { promisify } from 'util';
import { deflateRawSync, deflateSync } from 'zlib';

const execFileAsync = promisify(execFile);
const INFLATE_POOL = join(__dirname, '../../../dist/toolkit/convert/inflate-pool.js');

/** Runs `script` in a fresh Node process; resolves to its stdout, or rejects if it has not exited after 20 s. */
async function runAlone(script: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const { stdout } = await execFileAsync(process.execPath, ['-e', script], { timeout: 20_000, killSignal: 'SIGKILL', env: { ...process.env, ...env } });
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

describe('the inflate workers', () => {
  /**
   * One unit per batch, each answered by the native-handle path and by zlib's one-shot API
   * (IMAGING_INFLATE_ONE_SHOT=1): the same bytes kept, the same refusals.
   */
  it('inflate through the stream handle exactly as the one-shot API does', async () => {
    const unitSize = 64 * 1024;
    const content = Buffer.alloc(unitSize);
    for (let i = 0; i < unitSize; i++) content[i] = (i * 7 + (i >> 9)) % 251;
    const cases: Record<string, { codec: 'zlib' | 'deflate'; packed: Buffer; skip: number; keep: number }> = {
      zlib: { codec: 'zlib', packed: deflateSync(content), skip: 0, keep: unitSize },
      rawWithTrailingBytes: { codec: 'deflate', packed: Buffer.concat([deflateRawSync(content), Buffer.alloc(300, 0xab)]), skip: 0, keep: unitSize },
      partlyKept: { codec: 'deflate', packed: deflateRawSync(content), skip: 1000, keep: 5000 },
      short: { codec: 'deflate', packed: deflateRawSync(content.subarray(0, 4096)), skip: 0, keep: unitSize },
      tooLarge: { codec: 'deflate', packed: deflateRawSync(Buffer.concat([content, Buffer.from('x')])), skip: 0, keep: unitSize },
      truncatedHalf: { codec: 'zlib', packed: deflateSync(content).subarray(0, deflateSync(content).length >> 1), skip: 0, keep: unitSize },
      // Every byte of the unit is there, only the stream's end (zlib's checksum) is missing.
      missingTrailer: { codec: 'zlib', packed: deflateSync(content).subarray(0, deflateSync(content).length - 4), skip: 0, keep: unitSize },
      corrupt: { codec: 'deflate', packed: Buffer.alloc(64, 0xff), skip: 0, keep: unitSize },
    };
    const script = `
      const { inflateSharedBatch } = require(${JSON.stringify(INFLATE_POOL)});
      const { createHash } = require('crypto');
      const cases = ${JSON.stringify(Object.fromEntries(Object.entries(cases).map(([name, unit]) => [name, { ...unit, packed: unit.packed.toString('base64') }])))};
      (async () => {
        const results = {};
        for (const [name, { codec, packed, skip, keep }] of Object.entries(cases)) {
          const bytes = Buffer.from(packed, 'base64');
          const shared = new SharedArrayBuffer(bytes.length + keep);
          Buffer.from(shared).set(bytes, 0);
          const unit = { offset: 0, length: bytes.length, codec, unitSize: ${unitSize}, skip, keep, outOffset: bytes.length };
          results[name] = await inflateSharedBatch(shared, [unit]).then(
            () => 'kept ' + createHash('sha256').update(Buffer.from(shared, bytes.length, keep)).digest('hex'),
            (error) => error.failure.kind + (error.failure.kind === 'short' ? ' ' + error.failure.detail : ''),
          );
        }
        console.log(JSON.stringify(results));
      })();
    `;
    const viaHandle = JSON.parse(await runAlone(script));
    const oneShot = JSON.parse(await runAlone(script, { IMAGING_INFLATE_ONE_SHOT: '1' }));
    const sha = (bytes: Buffer): string => `kept ${createHash('sha256').update(bytes).digest('hex')}`;
    expect(viaHandle).toEqual({
      zlib: sha(content),
      rawWithTrailingBytes: sha(content),
      partlyKept: sha(content.subarray(1000, 6000)),
      short: 'short 4096',
      tooLarge: 'too-large',
      truncatedHalf: 'corrupt',
      missingTrailer: 'corrupt',
      corrupt: 'corrupt',
    });
    expect(oneShot).toEqual(viaHandle);
  });
});
