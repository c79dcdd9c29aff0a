import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { makeS3Client } from '../../../toolkit/io/object-storage';
import { createHash } from 'crypto';
import { existsSync, readFileSync, statSync } from 'fs';
import { join } from 'path';
import { FileSink } from '../../../toolkit/io/file-sink';
import { HashingSink } from '../../../toolkit/io/hashing-sink';
import { S3MultipartSink } from '../../../toolkit/io/s3-multipart-sink';
import type { ByteSink } from '../../../toolkit/io/sink';
import { seededBytes, tempDir } from '../../helpers/disk-corpus';
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
});

describe('S3MultipartSink (s3rver)', () => {
  let server: RunningS3Server;
  beforeAll(async () => {
    server = await startS3Server();
    await server.s3.send(new CreateBucketCommand({ Bucket: 'sinks' }));
  });
  afterAll(() => server.stop());

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

  it('abort sends AbortMultipartUpload and leaves no object', async () => {
    // s3rver does not implement AbortMultipartUpload or ListParts, so watch what the client sends.
    const sent: { command: string; uploadId?: string }[] = [];
    const s3 = makeS3Client({ endpoint: server.endpoint, region: server.region, forcePathStyle: true, accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey });
    s3.middlewareStack.add(
      (next, context) => async (args) => {
        sent.push({ command: String(context.commandName), uploadId: (args.input as { UploadId?: string }).UploadId });
        return next(args);
      },
      { step: 'initialize' },
    );
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
});
