import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import { makeS3Client } from '../../../toolkit/io/object-storage';
import { createHash } from 'crypto';
import { existsSync, readFileSync, statSync } from 'fs';
import { join } from 'path';
import { DiscardSink } from '../../../toolkit/io/discard-sink';
import { FileSink } from '../../../toolkit/io/file-sink';
import { HashingSink } from '../../../toolkit/io/hashing-sink';
import { S3MultipartSink } from '../../../toolkit/io/s3-multipart-sink';
import { canPatchHead, type ByteSink, type HeadPatchingSink } from '../../../toolkit/io/sink';
import { seededBytes, tempDir } from '../../helpers/disk-corpus';
import { describeWithMoto, startMotoServer } from '../../helpers/moto-server';
import { startS3Server, type RunningS3Server } from '../../helpers/s3-server';

const MiB = 1024 * 1024;

/** Writes a pattern of data and zero runs (ending in zeros) and returns the bytes expected. */
async function writePattern(sink: ByteSink): Promise<Buffer> {
  const pieces: Buffer[] = [];
  const data = async (length: number, seed: number): Promise<void> => {
    const bytes = seededBytes(length, seed);
    pieces.push(bytes);
    await sink.write(bytes);
  };
  const zeros = async (length: number): Promise<void> => {
    pieces.push(Buffer.alloc(length));
    await sink.writeZeros(length);
  };
  await data(3 * MiB + 17, 1);
  await zeros(4 * MiB + 3);
  await data(1, 2);
  await data(6 * MiB, 3);
  await zeros(2 * MiB + 1);
  return Buffer.concat(pieces);
}

/**
 * Holds a head of `headLength`, writes it (0xaa), then the pattern, then patches two places of
 * the head (its first and last bytes among them); returns the bytes expected.
 */
async function writePatchedHead(sink: HeadPatchingSink, headLength: number): Promise<Buffer> {
  sink.holdHead(headLength);
  const head = Buffer.alloc(headLength, 0xaa);
  await sink.write(head);
  const rest = await writePattern(sink);
  const first = Buffer.from('first');
  const last = Buffer.from('last');
  await sink.patchHead(0, first);
  await sink.patchHead(headLength - last.length, last);
  first.copy(head, 0);
  last.copy(head, headLength - last.length);
  return Buffer.concat([head, rest]);
}

describe('FileSink', () => {
  it('writes data and zero runs, leaving holes and the exact final size', async () => {
    const path = join(tempDir(), 'out.bin');
    const sink = await FileSink.create(path);
    const expected = await writePattern(sink);
    expect(await sink.finish()).toEqual({ size: expected.length });
    expect(readFileSync(path).equals(expected)).toBe(true);
    // Zero runs were skipped, not written: fewer blocks than bytes (on filesystems with holes).
    expect(statSync(path).blocks * 512).toBeLessThan(expected.length);
  });

  it('writes positionally, out of order and at once, then appends after the furthest byte', async () => {
    const path = join(tempDir(), 'out.bin');
    const sink = await FileSink.create(path, undefined, { durable: false });
    const a = seededBytes(MiB, 11);
    const b = seededBytes(MiB + 5, 12);
    await Promise.all([sink.writeAt!(5 * MiB, b), sink.writeAt!(MiB, a)]);
    await sink.writeZeros(3);
    const tail = Buffer.from('tail');
    await sink.write(tail);
    const expected = Buffer.concat([Buffer.alloc(MiB), a, Buffer.alloc(3 * MiB), b, Buffer.alloc(3), tail]);
    expect(await sink.finish()).toEqual({ size: expected.length });
    expect(readFileSync(path).equals(expected)).toBe(true);
  });

  it('refuses a positional write before bytes already appended', async () => {
    const sink = await FileSink.create(join(tempDir(), 'out.bin'));
    await sink.write(Buffer.alloc(100, 1));
    await expect(sink.writeAt!(50, Buffer.alloc(10))).rejects.toBeInstanceOf(RangeError);
    await sink.abort();
  });

  it('patches a held head in place after later bytes are written', async () => {
    const path = join(tempDir(), 'out.bin');
    const sink = await FileSink.create(path);
    expect(canPatchHead(sink)).toBe(true);
    const expected = await writePatchedHead(sink, 64 * 1024);
    expect(await sink.finish()).toEqual({ size: expected.length });
    expect(readFileSync(path).equals(expected)).toBe(true);
  });

  it('refuses a head held late and patches outside the held head or past the written bytes', async () => {
    const late = await FileSink.create(join(tempDir(), 'late.bin'));
    await late.write(Buffer.alloc(10));
    expect(() => late.holdHead(512)).toThrow(/before any byte is written/);
    await late.abort();

    const sink = await FileSink.create(join(tempDir(), 'out.bin'));
    sink.holdHead(512);
    await sink.write(Buffer.alloc(300, 1));
    await expect(sink.patchHead(290, Buffer.alloc(20))).rejects.toBeInstanceOf(RangeError); // past the written bytes
    await sink.write(Buffer.alloc(1000, 2));
    await expect(sink.patchHead(510, Buffer.alloc(4))).rejects.toBeInstanceOf(RangeError); // past the held head
    await expect(sink.patchHead(-1, Buffer.alloc(1))).rejects.toBeInstanceOf(RangeError);
    await sink.abort();
  });

  it('abort removes the file', async () => {
    const path = join(tempDir(), 'out.bin');
    const sink = await FileSink.create(path);
    await sink.write(Buffer.from('partial'));
    await sink.abort();
    expect(existsSync(path)).toBe(false);
  });
});

describe('HashingSink', () => {
  it('reports the SHA-256 of everything written, zeros included', async () => {
    const path = join(tempDir(), 'out.bin');
    const sink = new HashingSink(await FileSink.create(path));
    const expected = await writePattern(sink);
    await sink.finish();
    expect(sink.digestHex()).toBe(createHash('sha256').update(expected).digest('hex'));
    expect(createHash('sha256').update(readFileSync(path)).digest('hex')).toBe(sink.digestHex());
  });

  it('does not offer head patching (nor positional writes), even over a sink that does', async () => {
    const inner = await FileSink.create(join(tempDir(), 'out.bin'));
    expect(canPatchHead(inner)).toBe(true);
    const sink = new HashingSink(inner);
    expect(canPatchHead(sink)).toBe(false);
    expect((sink as ByteSink).writeAt).toBeUndefined();
    await sink.abort();
  });
});

describe('DiscardSink', () => {
  it('counts, keeps the first bytes, and lets patches reach them', async () => {
    const sink = new DiscardSink(1024);
    const expected = await writePatchedHead(sink, 100);
    expect(await sink.finish()).toEqual({ size: expected.length });
    expect(sink.head().equals(expected.subarray(0, 1024))).toBe(true);
  });
});

/** What these tests need of an S3 server; both helpers' servers have it. */
type S3ServerUnderTest = Pick<RunningS3Server, 'endpoint' | 's3' | 'accessKeyId' | 'secretAccessKey' | 'region' | 'stop'>;

describe('S3MultipartSink (s3rver)', () => s3SinkTests(startS3Server, { listsUploads: false }));
// moto implements ListMultipartUploads (and checks more of S3), so an abort is checked on the server too.
describeWithMoto('S3MultipartSink (moto_server)', () => s3SinkTests(startMotoServer, { listsUploads: true }));

function s3SinkTests(start: () => Promise<S3ServerUnderTest>, { listsUploads }: { listsUploads: boolean }): void {
  let server: S3ServerUnderTest;
  beforeAll(async () => {
    server = await start();
    await server.s3.send(new CreateBucketCommand({ Bucket: 'sinks' }));
  }, 90_000);
  afterAll(() => server?.stop());

  /** A client for the server that records each request it sends. */
  function recordingClient(): { s3: S3Client; sent: { command: string; uploadId?: string; partNumber?: number; bodyLength?: number }[] } {
    const sent: { command: string; uploadId?: string; partNumber?: number; bodyLength?: number }[] = [];
    const s3 = makeS3Client({ endpoint: server.endpoint, region: server.region, forcePathStyle: true, accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey });
    s3.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { UploadId?: string; PartNumber?: number; Body?: Buffer };
        sent.push({ command: String(context.commandName), uploadId: input.UploadId, partNumber: input.PartNumber, bodyLength: input.Body?.length });
        return next(args);
      },
      { step: 'initialize' },
    );
    return { s3, sent };
  }

  async function objectBytes(key: string): Promise<Buffer> {
    const response = await server.s3.send(new GetObjectCommand({ Bucket: 'sinks', Key: key }));
    return Buffer.from(await response.Body!.transformToByteArray());
  }

  it('uploads many parts in parallel into one object', async () => {
    const sink = new S3MultipartSink(server.s3, 'sinks', 'multi.bin', { partSize: 5 * MiB, queueSize: 3 });
    const expected = await writePattern(sink); // ~15 MiB: 4 parts, the last one short
    expect(await sink.finish()).toEqual({ size: expected.length });
    expect((await objectBytes('multi.bin')).equals(expected)).toBe(true);
  });

  it('uploads a small object (one part) and an empty one', async () => {
    const small = new S3MultipartSink(server.s3, 'sinks', 'small.bin');
    await small.write(Buffer.from('hello'));
    await small.writeZeros(3);
    await small.finish();
    expect((await objectBytes('small.bin')).equals(Buffer.from('hello\0\0\0'))).toBe(true);

    const empty = new S3MultipartSink(server.s3, 'sinks', 'empty.bin');
    expect(await empty.finish()).toEqual({ size: 0 });
    expect((await objectBytes('empty.bin')).length).toBe(0);
  });

  it('sends part bodies as UNSIGNED-PAYLOAD unless asked to sign them', async () => {
    const signedHashes = async (key: string, signPayload?: boolean): Promise<Map<string, string>> => {
      const s3 = makeS3Client({ endpoint: server.endpoint, region: server.region, forcePathStyle: true, accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey });
      const hashes = new Map<string, string>();
      // After signing: the payload hash the request was signed with, per command.
      s3.middlewareStack.add(
        (next, context) => async (args) => {
          const request = args.request as { headers: Record<string, string> };
          hashes.set(String(context.commandName), request.headers['x-amz-content-sha256']);
          return next(args);
        },
        { step: 'finalizeRequest', priority: 'low' },
      );
      const multi = new S3MultipartSink(s3, 'sinks', key, { partSize: 5 * MiB, signPayload });
      const expected = await writePattern(multi);
      await multi.finish();
      expect((await objectBytes(key)).equals(expected)).toBe(true);
      const single = new S3MultipartSink(s3, 'sinks', `${key}.small`, { signPayload });
      await single.write(Buffer.from('small'));
      await single.finish();
      s3.destroy();
      return hashes;
    };
    const unsigned = await signedHashes('unsigned.bin');
    expect(unsigned.get('UploadPartCommand')).toBe('UNSIGNED-PAYLOAD');
    expect(unsigned.get('PutObjectCommand')).toBe('UNSIGNED-PAYLOAD');
    const signed = await signedHashes('signed.bin', true);
    expect(signed.get('UploadPartCommand')).toMatch(/^[0-9a-f]{64}$/);
    expect(signed.get('PutObjectCommand')).toBe(createHash('sha256').update('small').digest('hex'));
  });

  it('holds the head in part 1, patches it in memory and uploads it last', async () => {
    const { s3, sent } = recordingClient();
    const sink = new S3MultipartSink(s3, 'sinks', 'held.bin', { partSize: 5 * MiB, queueSize: 2 });
    expect(canPatchHead(sink)).toBe(true);
    const expected = await writePatchedHead(sink, 64 * 1024); // ~15 MiB: 4 parts
    expect(await sink.finish()).toEqual({ size: expected.length });
    expect((await objectBytes('held.bin')).equals(expected)).toBe(true);
    const parts = sent.filter((c) => c.command === 'UploadPartCommand');
    expect(parts.map((c) => c.partNumber)).toEqual([2, 3, 4, 1]);
    expect(parts.map((c) => c.bodyLength)).toEqual([5 * MiB, 5 * MiB, expected.length - 15 * MiB, 5 * MiB]);
    s3.destroy();
  });

  it('a head longer than a part makes part 1 that long', async () => {
    const { s3, sent } = recordingClient();
    const sink = new S3MultipartSink(s3, 'sinks', 'long-head.bin', { partSize: 5 * MiB, queueSize: 2 });
    const headLength = 12 * MiB + 5;
    const expected = await writePatchedHead(sink, headLength);
    await sink.finish();
    expect((await objectBytes('long-head.bin')).equals(expected)).toBe(true);
    const parts = sent.filter((c) => c.command === 'UploadPartCommand');
    expect(parts[parts.length - 1]).toMatchObject({ partNumber: 1, bodyLength: headLength });
    expect(parts.reduce((sum, c) => sum + c.bodyLength!, 0)).toBe(expected.length);
    s3.destroy();
  });

  it('an object that fits in the held part is one PutObject', async () => {
    for (const [key, length] of [['short-head.bin', 1000], ['full-head.bin', 5 * MiB]] as const) {
      const { s3, sent } = recordingClient();
      const sink = new S3MultipartSink(s3, 'sinks', key, { partSize: 5 * MiB });
      sink.holdHead(512);
      const bytes = seededBytes(length, 9);
      await sink.write(bytes);
      await sink.patchHead(500, Buffer.from('patched'));
      Buffer.from('patched').copy(bytes, 500);
      await sink.finish();
      expect(sent.map((c) => c.command)).toEqual(['PutObjectCommand']);
      expect((await objectBytes(key)).equals(bytes)).toBe(true);
      s3.destroy();
    }
  });

  it('refuses a head held late, a head beyond S3\'s part limit, and patches outside the head', async () => {
    const late = new S3MultipartSink(server.s3, 'sinks', 'late.bin');
    await late.write(Buffer.alloc(10));
    expect(() => late.holdHead(512)).toThrow(/before any byte is written/);
    await late.abort();
    expect(() => new S3MultipartSink(server.s3, 'sinks', 'huge.bin').holdHead(6 * 1024 * MiB)).toThrow(RangeError);

    const sink = new S3MultipartSink(server.s3, 'sinks', 'bounds.bin');
    sink.holdHead(512);
    await sink.write(Buffer.alloc(300, 1));
    await expect(sink.patchHead(290, Buffer.alloc(20))).rejects.toBeInstanceOf(RangeError);
    await sink.write(Buffer.alloc(1000, 2));
    await expect(sink.patchHead(510, Buffer.alloc(4))).rejects.toBeInstanceOf(RangeError);
    await sink.abort();
  });

  it('abort sends AbortMultipartUpload and leaves no object', async () => {
    // s3rver does not implement AbortMultipartUpload or ListMultipartUploads, so watch what the client sends (and ask moto).
    const { s3, sent } = recordingClient();
    const sink = new S3MultipartSink(s3, 'sinks', 'aborted.bin', { partSize: 5 * MiB, queueSize: 2 });
    await sink.write(seededBytes(12 * MiB, 5));
    // Give lib-storage time to start the multipart upload and send parts.
    for (let i = 0; i < 50 && !sent.some((c) => c.command === 'UploadPartCommand'); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    await sink.abort();
    const uploadId = sent.find((c) => c.command === "UploadPartCommand")?.uploadId;
    expect(uploadId).toBeDefined();
    expect(sent).toContainEqual({ command: 'AbortMultipartUploadCommand', uploadId });
    expect(sent.map((c) => c.command)).not.toContain('CompleteMultipartUploadCommand');
    await expect(server.s3.send(new HeadObjectCommand({ Bucket: 'sinks', Key: 'aborted.bin' }))).rejects.toMatchObject({ name: 'NotFound' });
    await expect(sink.write(Buffer.from('late'))).rejects.toThrow(/aborted/);
    if (listsUploads) {
      const listed = await server.s3.send(new ListMultipartUploadsCommand({ Bucket: 'sinks', Prefix: 'aborted.bin' }));
      expect(listed.Uploads ?? []).toEqual([]);
    }
    s3.destroy();
  });

  it('write() fails instead of hanging when the upload fails', async () => {
    const sink = new S3MultipartSink(server.s3, 'no-such-bucket', 'x.bin', { partSize: 5 * MiB, queueSize: 1 });
    const writeMuch = async (): Promise<void> => {
      for (let i = 0; i < 20; i++) await sink.write(seededBytes(5 * MiB, i));
      await sink.finish();
    };
    await expect(writeMuch()).rejects.toThrow(/bucket/i);
    await sink.abort();
  });
}
