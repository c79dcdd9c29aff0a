/**
 * Bounded memory, end to end through the S3 path: a 512 MiB raw image, allocated but for two
 * 16 MiB holes (every other byte pseudo-random data), is put in an S3 server and converted
 * S3 → S3 (S3ObjectSource ranged GETs in, S3MultipartSink out) in a child process of its own,
 * so that the kernel's high-water mark of that process (VmHWM) is the conversion's peak and
 * not the S3 server's or jest's. Checked: every byte of the output (its SHA-256 against
 * `qemu-img convert -O raw` of the same input), and the peak above the child's RSS before the
 * job against the converter's bound plus the upload's parts plus a stated allowance.
 */
import { CreateBucketCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { spawn } from 'child_process';
import { createHash, randomFillSync } from 'crypto';
import { closeSync, createReadStream, openSync, statSync, writeSync } from 'fs';
import { join } from 'path';
import type { ConvertJob, WorkerResult } from '../../../bench/convert-worker';
import { qemuImg, tempDir } from '../../helpers/disk-corpus';
import { startS3Server, type RunningS3Server } from '../../helpers/s3-server';

const MiB = 1024 * 1024;
const IMAGE_BYTES = 512 * MiB;
/** The converter's bound (convertImage's memoryLimitBytes). */
const MEMORY_LIMIT = 16 * MiB;
/** The sink holds (queueSize + 1) parts of partSize: outside the converter's bound, added to it. */
const PART_SIZE = 5 * MiB;
const QUEUE_SIZE = 2;
/**
 * What else a process moving 512 MiB through the SDK holds at its worst: HTTP response and
 * request buffers, freed buffers not yet collected, the heap's growth.
 */
const ALLOWANCE = 32 * MiB;
const WORKER = join(__dirname, '../../../dist/bench/convert-worker.js');

/**
 * Writes the image: 1 MiB blocks of one random buffer, each made distinct by its index stamped
 * every 4 KiB (so no block is zeros, nor equal to another, and a misplaced block shows), except
 * two 16 MiB holes left unwritten (zeros, as a disk has). Fast: no per-byte generator.
 */
function writeImage(path: string): void {
  const block = randomFillSync(Buffer.alloc(MiB));
  const fd = openSync(path, 'w');
  try {
    for (let i = 0; i < IMAGE_BYTES / MiB; i++) {
      if ((i >= 100 && i < 116) || (i >= 300 && i < 316)) continue;
      for (let at = 0; at < MiB; at += 4096) block.writeUInt32LE(i, at);
      writeSync(fd, block, 0, MiB, i * MiB);
    }
  } finally {
    closeSync(fd);
  }
  if (statSync(path).size !== IMAGE_BYTES) throw new Error('the image came out short');
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function objectSha256(s3: S3Client, bucket: string, key: string): Promise<{ sha256: string; size: number }> {
  const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of response.Body as AsyncIterable<Uint8Array>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** Runs one conversion in its own process (bench/convert-worker, compiled by the test run's setup). */
function runConversion(job: ConvertJob): Promise<WorkerResult> {
  // Asynchronous: the S3 server answering the child runs in this process.
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`conversion worker exited with ${code}: ${stderr.trim()}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!));
    });
  });
}

describe('conversion memory', () => {
  let server: RunningS3Server;
  beforeAll(async () => {
    server = await startS3Server();
    await server.s3.send(new CreateBucketCommand({ Bucket: 'memory' }));
  });
  afterAll(() => server.stop());

  it('converts a 512 MiB, mostly allocated image S3 → S3 within the memory bound, byte for byte as qemu-img does', async () => {
    const dir = tempDir('convert-memory-');
    const input = join(dir, 'big.raw');
    writeImage(input);
    await new Upload({
      client: server.s3,
      params: { Bucket: 'memory', Key: 'big.raw', Body: createReadStream(input, { highWaterMark: MiB }) },
      partSize: 16 * MiB,
      queueSize: 4,
    }).done();

    const result = await runConversion({
      input: 's3://memory/big.raw',
      output: 's3://memory/big-converted.raw',
      outputFormat: 'raw',
      s3Endpoint: server.endpoint,
      partSize: PART_SIZE,
      queueSize: QUEUE_SIZE,
      memoryLimitBytes: MEMORY_LIMIT,
    });
    expect(result.bytesWritten).toBe(IMAGE_BYTES);

    const reference = join(dir, 'reference.raw');
    qemuImg('convert', '-f', 'raw', '-O', 'raw', input, reference);
    expect(await objectSha256(server.s3, 'memory', 'big-converted.raw')).toEqual({ sha256: await fileSha256(reference), size: IMAGE_BYTES });

    const added = result.peakRssBytes - result.baselineRssBytes;
    const bound = MEMORY_LIMIT + (QUEUE_SIZE + 1) * PART_SIZE + ALLOWANCE;
     
    console.log(`conversion child: baseline RSS ${(result.baselineRssBytes / MiB).toFixed(0)} MiB, peak ${(result.peakRssBytes / MiB).toFixed(0)} MiB, added ${(added / MiB).toFixed(0)} MiB (bound ${(bound / MiB).toFixed(0)} MiB), ${result.seconds.toFixed(1)} s`);
    expect(added).toBeLessThan(bound);
  }, 300_000);
});
