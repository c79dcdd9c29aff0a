import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { writeFileSync } from 'fs';
import { createServer, type Server } from 'http';
import type { AddressInfo } from 'net';
import { join } from 'path';
import { ConcatenatedSource } from '../../../toolkit/io/concat-source';
import { FileSource } from '../../../toolkit/io/file-source';
import { HttpRangeSource } from '../../../toolkit/io/http-range-source';
import { S3ObjectSource } from '../../../toolkit/io/s3-object-source';
import { parseS3Url } from '../../../toolkit/io/s3-url';
import { SourceRangeError, type RandomAccessSource } from '../../../toolkit/io/source';
import { seededBytes, tempDir } from '../../helpers/disk-corpus';
import { startS3Server, type RunningS3Server } from '../../helpers/s3-server';

const whole = seededBytes(3 * 1024 * 1024 + 4321, 42);

/** Reads chosen to hit starts, ends, and boundaries; each compared with the same slice of `expected`. */
async function expectReadsMatch(source: RandomAccessSource, expected: Buffer, extraOffsets: number[] = []): Promise<void> {
  expect(source.size).toBe(expected.length);
  const ranges: [number, number][] = [
    [0, 1],
    [0, expected.length],
    [expected.length - 1, 1],
    [expected.length, 0],
    [12345, 678901],
  ];
  for (const offset of extraOffsets) ranges.push([Math.max(0, offset - 3), Math.min(7, expected.length - Math.max(0, offset - 3))]);
  for (const [offset, length] of ranges) {
    const got = await source.read(offset, length);
    expect(got.length).toBe(length);
    expect(got.equals(expected.subarray(offset, offset + length))).toBe(true);
  }
  await expect(source.read(expected.length - 10, 11)).rejects.toBeInstanceOf(SourceRangeError);
  await expect(source.read(-1, 2)).rejects.toBeInstanceOf(SourceRangeError);
}

describe('FileSource', () => {
  it('reads exact ranges and refuses reads outside the file', async () => {
    const path = join(tempDir(), 'whole.bin');
    writeFileSync(path, whole);
    const source = await FileSource.open(path);
    try {
      expect(source.name).toBe('whole.bin');
      await expectReadsMatch(source, whole);
      // Many reads at once over one handle.
      const reads = await Promise.all(Array.from({ length: 32 }, (_, i) => source.read(i * 1000, 5000)));
      reads.forEach((buffer, i) => expect(buffer.equals(whole.subarray(i * 1000, i * 1000 + 5000))).toBe(true));
    } finally {
      await source.close();
    }
  });
});

describe('ConcatenatedSource', () => {
  it('reads spanning part boundaries, including empty parts', async () => {
    const dir = tempDir();
    const cuts = [0, 1, 1, 700_000, 700_001, 2_000_000, whole.length]; // parts of 1, 0, 699999, 1, ... bytes
    const parts: RandomAccessSource[] = [];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const path = join(dir, `part${i}`);
      writeFileSync(path, whole.subarray(cuts[i], cuts[i + 1]));
      parts.push(await FileSource.open(path));
    }
    const source = new ConcatenatedSource(parts, 'parts');
    try {
      await expectReadsMatch(source, whole, cuts);
      const spanning = await source.read(1, 1_999_999);
      expect(spanning.equals(whole.subarray(1, 2_000_000))).toBe(true);
      // readInto fills caller memory across the same boundaries (each part reads its own piece).
      const target = Buffer.alloc(1_999_999, 0xaa);
      await source.readInto(1, target);
      expect(target.equals(whole.subarray(1, 2_000_000))).toBe(true);
      const tail = Buffer.alloc(5);
      await source.readInto(whole.length - 5, tail);
      expect(tail.equals(whole.subarray(whole.length - 5))).toBe(true);
      await expect(source.readInto(whole.length - 4, Buffer.alloc(5))).rejects.toThrow(/outside/);
    } finally {
      await source.close();
    }
  });
});

describe('S3 and HTTP range sources (s3rver)', () => {
  let server: RunningS3Server;
  beforeAll(async () => {
    server = await startS3Server();
    await server.s3.send(new CreateBucketCommand({ Bucket: 'sources' }));
    await server.s3.send(new PutObjectCommand({ Bucket: 'sources', Key: 'dir/whole.bin', Body: whole }));
  });
  afterAll(() => server.stop());

  it('S3ObjectSource reads ranges by GET and learns the size by HEAD', async () => {
    const { bucket, key } = parseS3Url('s3://sources/dir/whole.bin');
    const source = await S3ObjectSource.open(server.s3, bucket, key);
    expect(source.name).toBe('s3://sources/dir/whole.bin');
    await expectReadsMatch(source, whole);
  });

  it('S3ObjectSource refuses to go on reading an object replaced after it was opened', async () => {
    await server.s3.send(new PutObjectCommand({ Bucket: 'sources', Key: 'dir/replaced.bin', Body: whole }));
    const source = await S3ObjectSource.open(server.s3, 'sources', 'dir/replaced.bin');
    expect((await source.read(1000, 10)).equals(whole.subarray(1000, 1010))).toBe(true);
    await server.s3.send(new PutObjectCommand({ Bucket: 'sources', Key: 'dir/replaced.bin', Body: Buffer.from(whole).reverse() }));
    await expect(source.read(1000, 10)).rejects.toThrow(/s3:\/\/sources\/dir\/replaced.bin changed while it was being read/);
  });

  it('S3ObjectSource reads into caller memory, the first byte alone included', async () => {
    const source = await S3ObjectSource.open(server.s3, 'sources', 'dir/whole.bin');
    const target = Buffer.alloc(4096, 0xaa);
    await source.readInto(0, target.subarray(0, 1));
    await source.readInto(5000, target.subarray(1, 4096));
    expect(target[0]).toBe(whole[0]);
    expect(target.subarray(1).equals(whole.subarray(5000, 5000 + 4095))).toBe(true);
  });

  it('HttpRangeSource reads through a presigned URL', async () => {
    const url = await getSignedUrl(server.s3, new GetObjectCommand({ Bucket: 'sources', Key: 'dir/whole.bin' }), { expiresIn: 600 });
    await expectReadsMatch(new HttpRangeSource(url, whole.length, 'whole.bin'), whole);
  });

  it('HttpRangeSource refuses a declared size that disagrees with the object', async () => {
    const url = await getSignedUrl(server.s3, new GetObjectCommand({ Bucket: 'sources', Key: 'dir/whole.bin' }), { expiresIn: 600 });
    const source = new HttpRangeSource(url, whole.length + 100, 'whole.bin');
    await expect(source.read(0, 10)).rejects.toThrow(/Content-Range.*changed size/);
  });
});

describe('HttpRangeSource against a misbehaving server', () => {
  let server: Server;
  let url: string;
  let failuresLeft = 0;
  let ignoreRange = false;
  let requests = 0;
  beforeAll(async () => {
    server = createServer((request, response) => {
      requests++;
      if (failuresLeft > 0) {
        failuresLeft--;
        response.writeHead(503).end('busy');
        return;
      }
      if (ignoreRange) {
        response.writeHead(200, { 'Content-Length': whole.length }).end(whole);
        return;
      }
      const [, first, last] = /bytes=(\d+)-(\d+)/.exec(request.headers.range ?? '') ?? [];
      const slice = whole.subarray(Number(first), Number(last) + 1);
      response.writeHead(206, { 'Content-Range': `bytes ${first}-${last}/${whole.length}`, 'Content-Length': slice.length }).end(slice);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/object`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => {
    failuresLeft = 0;
    ignoreRange = false;
    requests = 0;
  });

  it('retries transient failures', async () => {
    failuresLeft = 2;
    const source = new HttpRangeSource(url, whole.length, 'object', { baseDelayMs: 1 });
    expect((await source.read(100, 50)).equals(whole.subarray(100, 150))).toBe(true);
    expect(requests).toBe(3);
  });

  it('gives up after a bounded number of attempts', async () => {
    failuresLeft = 100;
    const source = new HttpRangeSource(url, whole.length, 'object', { baseDelayMs: 1, attempts: 3 });
    await expect(source.read(0, 10)).rejects.toThrow(/HTTP 503/);
    expect(requests).toBe(3);
  });

  it('refuses a server that ignores Range', async () => {
    ignoreRange = true;
    const source = new HttpRangeSource(url, whole.length, 'object', { baseDelayMs: 1 });
    await expect(source.read(0, 10)).rejects.toThrow(/ignored the Range request/);
    expect(requests).toBe(1);
  });
});
