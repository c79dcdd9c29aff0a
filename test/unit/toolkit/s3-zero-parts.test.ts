/**
 * S3MultipartSink sends a part made only of zero runs (writeZeros) as UploadPartCopy from a zero
 * object, so no zero byte is uploaded. Checked against real servers: two that copy, the bench
 * object store (ours) and moto_server (one we did not write, skipped with the reason when it is
 * not installed), and s3rver, which answers NotImplemented, so the sink must fall back to bytes
 * after one try. Every test checks the object byte for byte, which request carried each part,
 * and that the zero object (which exists during the upload) is gone afterwards.
 */
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { rmSync } from 'fs';
import { join } from 'path';
import { startBenchObjectStore, type BenchObjectStore } from '../../../bench/bench-object-store';
import { makeS3Client } from '../../../toolkit/io/object-storage';
import { S3MultipartSink } from '../../../toolkit/io/s3-multipart-sink';
import type { ByteSink } from '../../../toolkit/io/sink';
import { seededBytes, tempDir } from '../../helpers/disk-corpus';
import { describeWithMoto, startMotoServer } from '../../helpers/moto-server';
import { startS3Server, type RunningS3Server } from '../../helpers/s3-server';

const MiB = 1024 * 1024;
const PART = 5 * MiB;
const BUCKET = 'zeros';

interface SentRequest {
  command: string;
  key?: string;
  partNumber?: number;
  copySource?: string;
  copySourceRange?: string;
  bodyLength?: number;
}

/**
 * A client for `endpoint` that records each request it sends: its command and the inputs these
 * tests look at. The bench store takes any credentials; s3rver only its own.
 */
function recordingClient(endpoint: string, credentials = { accessKeyId: 'BENCH', secretAccessKey: 'BENCH' }): { s3: S3Client; sent: SentRequest[] } {
  const sent: SentRequest[] = [];
  const s3 = makeS3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', ...credentials });
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Key?: string; PartNumber?: number; CopySource?: string; CopySourceRange?: string; Body?: Buffer };
      sent.push({
        command: String(context.commandName).replace(/Command$/, ''),
        key: input.Key,
        partNumber: input.PartNumber,
        copySource: input.CopySource,
        copySourceRange: input.CopySourceRange,
        bodyLength: input.Body?.length,
      });
      return next(args);
    },
    { step: 'initialize' },
  );
  return { s3, sent };
}

/** Part numbers of the `command` requests (UploadPart, UploadPartCopy), in the order sent. */
function partNumbers(sent: SentRequest[], command: string): number[] {
  return sent.filter((request) => request.command === command).map((request) => request.partNumber!);
}

/** The key of the zero object, from the PutObject that created it: there must be exactly one. */
function zeroObjectKey(sent: SentRequest[], outputKey: string, partSize = PART): string {
  const puts = sent.filter((request) => request.command === 'PutObject');
  expect(puts).toHaveLength(1);
  expect(puts[0].key!.startsWith(`${outputKey}.zero-part-`)).toBe(true);
  expect(puts[0].key).toMatch(/\.zero-part-[0-9a-f]+$/);
  expect(puts[0].bodyLength).toBe(partSize);
  return puts[0].key!;
}

/**
 * Writes, with 5 MiB parts: part 1 data; part 2 zeros; part 3 zeros then data; part 4 data;
 * parts 5 and 6 zeros, 6 short. Zero runs cross part boundaries, as a writer's do. With one
 * upload slot, part 3 reuses part 1's buffer, still full of its data: the zeros skipped at its
 * start must be filled in. Returns the bytes expected.
 */
async function writeMix(sink: ByteSink): Promise<Buffer> {
  const data1 = seededBytes(PART, 1);
  const data2 = seededBytes(8 * MiB, 2);
  await sink.write(data1);
  await sink.writeZeros(PART - 4096);
  await sink.writeZeros(4096 + 2 * MiB);
  await sink.write(data2);
  await sink.writeZeros(6 * MiB + 123);
  return Buffer.concat([data1, Buffer.alloc(7 * MiB), data2, Buffer.alloc(6 * MiB + 123)]);
}

async function objectBytes(s3: S3Client, key: string): Promise<Buffer> {
  const response = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await response.Body!.transformToByteArray());
}

async function expectNoObject(s3: S3Client, key: string): Promise<void> {
  await expect(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
}

/** A server that implements UploadPartCopy: its endpoint, and how to stop it. */
interface CopyingServer {
  endpoint: string;
  close(): Promise<void>;
}

async function startBenchStore(): Promise<CopyingServer> {
  const dir = tempDir('zero-parts-');
  const store: BenchObjectStore = await startBenchObjectStore(join(dir, 'objects'));
  return {
    endpoint: store.endpoint,
    async close() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startMoto(): Promise<CopyingServer> {
  const moto = await startMotoServer();
  return { endpoint: moto.endpoint, close: () => moto.stop() };
}

describe('S3MultipartSink zero parts (bench object store, which copies)', () => copyingServerTests(startBenchStore));
describeWithMoto('S3MultipartSink zero parts (moto_server, which copies)', () => copyingServerTests(startMoto));

function copyingServerTests(start: () => Promise<CopyingServer>): void {
  let server: CopyingServer;
  let store: { endpoint: string };
  let s3: S3Client;
  beforeAll(async () => {
    server = await start();
    store = { endpoint: server.endpoint };
    s3 = recordingClient(store.endpoint).s3;
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  }, 90_000);
  afterAll(async () => {
    s3?.destroy();
    await server?.close();
  });

  it('copies whole zero parts from a zero object, uploads the others, and deletes the zero object', async () => {
    const { s3: recorded, sent } = recordingClient(store.endpoint);
    const key = 'images/disk one+1.raw'; // CopySource must be URL-encoded
    const sink = new S3MultipartSink(recorded, BUCKET, key, { partSize: PART, queueSize: 1 });
    const expected = await writeMix(sink);
    expect(await sink.finish()).toEqual({ size: expected.length });
    expect((await objectBytes(s3, key)).equals(expected)).toBe(true);

    expect(partNumbers(sent, 'UploadPart')).toEqual([1, 3, 4]);
    expect(partNumbers(sent, 'UploadPartCopy')).toEqual([2, 5, 6]);
    const zeroKey = zeroObjectKey(sent, key);
    const copies = sent.filter((request) => request.command === 'UploadPartCopy');
    const hex = zeroKey.slice(zeroKey.lastIndexOf('-') + 1);
    expect(new Set(copies.map((copy) => copy.copySource))).toEqual(new Set([`${BUCKET}/images/disk%20one%2B1.raw.zero-part-${hex}`]));
    expect(copies.map((copy) => copy.copySourceRange)).toEqual([`bytes=0-${PART - 1}`, `bytes=0-${PART - 1}`, `bytes=0-${MiB + 122}`]);
    // The zero object goes after completion.
    const commands = sent.map((request) => request.command);
    expect(commands.slice(-2)).toEqual(['CompleteMultipartUpload', 'DeleteObject']);
    expect(sent[sent.length - 1].key).toBe(zeroKey);
    await expectNoObject(s3, zeroKey);
    recorded.destroy();
  });

  it('never copies a held head, nor puts the zero object for a short last part alone; a small object is one PutObject', async () => {
    const { s3: recorded, sent } = recordingClient(store.endpoint);
    const sink = new S3MultipartSink(recorded, BUCKET, 'held.vhd', { partSize: PART, queueSize: 2 });
    sink.holdHead(4096);
    await sink.writeZeros(2 * PART);
    const tail = seededBytes(MiB, 3);
    await sink.write(tail);
    await sink.patchHead(0, Buffer.from('head'));
    await sink.finish();
    const expected = Buffer.concat([Buffer.from('head'), Buffer.alloc(2 * PART - 4), tail]);
    expect((await objectBytes(s3, 'held.vhd')).equals(expected)).toBe(true);
    expect(partNumbers(sent, 'UploadPartCopy')).toEqual([2]);
    expect(partNumbers(sent, 'UploadPart')).toEqual([3, 1]);
    await expectNoObject(s3, zeroObjectKey(sent, 'held.vhd'));
    recorded.destroy();

    // Putting 5 MiB of zeros to spare uploading 1 MiB would cost more than it saves.
    const { s3: shortTail, sent: shortTailSent } = recordingClient(store.endpoint);
    const shortTailSink = new S3MultipartSink(shortTail, BUCKET, 'short-zero-tail.raw', { partSize: PART });
    const data = seededBytes(PART, 5);
    await shortTailSink.write(data);
    await shortTailSink.writeZeros(MiB);
    await shortTailSink.finish();
    expect((await objectBytes(s3, 'short-zero-tail.raw')).equals(Buffer.concat([data, Buffer.alloc(MiB)]))).toBe(true);
    expect(partNumbers(shortTailSent, 'UploadPart')).toEqual([1, 2]);
    expect(shortTailSent.map((request) => request.command)).not.toContain('PutObject');
    shortTail.destroy();

    for (const [key, tailBytes] of [['small.raw', Buffer.from('tail')], ['small-zeros.raw', Buffer.alloc(0)]] as const) {
      const { s3: small, sent: smallSent } = recordingClient(store.endpoint);
      const smallSink = new S3MultipartSink(small, BUCKET, key, { partSize: PART });
      await smallSink.writeZeros(1000);
      await smallSink.write(tailBytes);
      await smallSink.finish();
      expect(smallSent.map((request) => request.command)).toEqual(['PutObject']);
      expect((await objectBytes(s3, key)).equals(Buffer.concat([Buffer.alloc(1000), tailBytes]))).toBe(true);
      small.destroy();
    }
  });

  it('copyZeroParts: false uploads every part as bytes, with no zero object', async () => {
    const { s3: recorded, sent } = recordingClient(store.endpoint);
    const sink = new S3MultipartSink(recorded, BUCKET, 'no-copy.raw', { partSize: PART, queueSize: 2, copyZeroParts: false });
    const expected = await writeMix(sink);
    await sink.finish();
    expect((await objectBytes(s3, 'no-copy.raw')).equals(expected)).toBe(true);
    expect(partNumbers(sent, 'UploadPart').sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
    const commands = sent.map((request) => request.command);
    expect(commands).not.toContain('UploadPartCopy');
    expect(commands).not.toContain('PutObject');
    expect(commands).not.toContain('DeleteObject');
    recorded.destroy();
  });

  describe('parts cut at zero runs (expected size known)', () => {
    const BIG_PART = 16 * MiB;
    /**
     * Bytes and zeros at 0: data 2, zeros 40, data 1, zeros 8, data 3, zeros 30, data 2 (MiB).
     * At 16 MiB parts without cuts, 54 MiB of it would be uploaded as bytes.
     */
    async function writeRuns(sink: ByteSink): Promise<Buffer> {
      const pieces: Buffer[] = [];
      const data = async (mib: number, seed: number): Promise<void> => {
        const bytes = seededBytes(mib * MiB, seed);
        pieces.push(bytes);
        await sink.write(bytes);
      };
      const zeros = async (mib: number): Promise<void> => {
        pieces.push(Buffer.alloc(mib * MiB));
        await sink.writeZeros(mib * MiB);
      };
      await data(2, 11);
      await zeros(40);
      await data(1, 12);
      await zeros(8);
      await data(3, 13);
      await zeros(30);
      await data(2, 14);
      return Buffer.concat(pieces);
    }
    const uploadedBytes = (sent: SentRequest[]): number =>
      sent.filter((request) => request.command === 'UploadPart').reduce((total, request) => total + request.bodyLength!, 0);
    const copiedRanges = (sent: SentRequest[]): string[] => sent.filter((request) => request.command === 'UploadPartCopy').map((request) => request.copySourceRange!);

    it('ends a part of bytes at a long zero run and copies the run, even where it does not fill a part', async () => {
      const { s3: recorded, sent } = recordingClient(store.endpoint);
      const sink = new S3MultipartSink(recorded, BUCKET, 'cut.raw', { partSize: BIG_PART, queueSize: 2, expectedSize: 86 * MiB });
      const expected = await writeRuns(sink);
      expect(await sink.finish()).toEqual({ size: expected.length });
      expect((await objectBytes(s3, 'cut.raw')).equals(expected)).toBe(true);
      // Part 1: 2 MiB data padded to 5; 2-4: the 37 MiB left of the run (16, 16, 5); 5: data 1, zeros 8
      // (too short to cut), data 3; 6-7: the 30 MiB run (16, 14); 8: the last data.
      expect(partNumbers(sent, 'UploadPart').sort((a, b) => a - b)).toEqual([1, 5, 8]);
      expect(partNumbers(sent, 'UploadPartCopy').sort((a, b) => a - b)).toEqual([2, 3, 4, 6, 7]);
      expect(sent.filter((request) => request.command === 'UploadPart').map((request) => request.bodyLength! / MiB)).toEqual([5, 12, 2]);
      expect(copiedRanges(sent)).toEqual([16, 16, 5, 16, 14].map((mib) => `bytes=0-${mib * MiB - 1}`));
      expect(uploadedBytes(sent)).toBe(19 * MiB);
      await expectNoObject(s3, zeroObjectKey(sent, 'cut.raw', BIG_PART));
      recorded.destroy();
    });

    it('keeps whole parts without an expected size, or when cutting could run past 10,000 parts', async () => {
      for (const [key, expectedSize] of [['uncut.raw', undefined], ['uncut-huge.raw', 9998 * BIG_PART]] as const) {
        const { s3: recorded, sent } = recordingClient(store.endpoint);
        const sink = new S3MultipartSink(recorded, BUCKET, key, { partSize: BIG_PART, queueSize: 2, expectedSize });
        const expected = await writeRuns(sink);
        await sink.finish();
        expect((await objectBytes(s3, key)).equals(expected)).toBe(true);
        // 16 MiB parts at 0, 16, 32, 48, 64, 80: only [16, 32) and [64, 80) are zeros alone.
        expect(partNumbers(sent, 'UploadPartCopy').sort((a, b) => a - b)).toEqual([2, 5]);
        expect(uploadedBytes(sent)).toBe(54 * MiB);
        recorded.destroy();
      }
    });
  });

  it('abort() mid-upload deletes the zero object too', async () => {
    const { s3: recorded, sent } = recordingClient(store.endpoint);
    const sink = new S3MultipartSink(recorded, BUCKET, 'aborted.raw', { partSize: PART, queueSize: 2 });
    await sink.write(seededBytes(PART, 4));
    await sink.writeZeros(2 * PART);
    // Wait until the zero object exists, so the abort has something to delete.
    let zeroKey: string | undefined;
    for (let i = 0; i < 100 && !zeroKey; i++) {
      const put = sent.find((request) => request.command === 'PutObject');
      if (put && (await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: put.key })).then(() => true, () => false))) zeroKey = put.key;
      else await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(zeroKey).toBeDefined();
    await sink.abort();
    expect(sent.map((request) => request.command)).toContain('AbortMultipartUpload');
    expect(sent).toContainEqual(expect.objectContaining({ command: 'DeleteObject', key: zeroKey }));
    await expectNoObject(s3, zeroKey!);
    await expectNoObject(s3, 'aborted.raw');
    recorded.destroy();
  });
}

describe('S3MultipartSink zero parts (s3rver, which has no UploadPartCopy)', () => {
  let server: RunningS3Server;
  beforeAll(async () => {
    server = await startS3Server();
    await server.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  });
  afterAll(() => server.stop());

  it('tries one copy, then uploads every zero part as bytes; the object is whole and the zero object gone', async () => {
    const { s3, sent } = recordingClient(server.endpoint, server);
    const sink = new S3MultipartSink(s3, BUCKET, 'fallback.raw', { partSize: PART, queueSize: 2 });
    const expected = await writeMix(sink);
    expect(await sink.finish()).toEqual({ size: expected.length });
    expect((await objectBytes(server.s3, 'fallback.raw')).equals(expected)).toBe(true);

    expect(partNumbers(sent, 'UploadPartCopy')).toEqual([2]);
    expect(partNumbers(sent, 'UploadPart').sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
    const zeroKey = zeroObjectKey(sent, 'fallback.raw');
    expect(sent).toContainEqual(expect.objectContaining({ command: 'DeleteObject', key: zeroKey }));
    const listed = await server.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'fallback.raw' }));
    expect(listed.Contents?.map((object) => object.Key)).toEqual(['fallback.raw']);
    s3.destroy();
  });
});
