import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { createHash } from 'crypto';
import { existsSync, readFileSync, statSync } from 'fs';
import { join } from 'path';
import { ConversionCancelledError } from '../../../toolkit/convert/cancellation';
import { convertImage } from '../../../toolkit/convert/convert-image';
import { ImageFormatError } from '../../../toolkit/errors';
import { openImage, sniffFormat } from '../../../toolkit/formats/registry';
import { ConcatenatedSource } from '../../../toolkit/io/concat-source';
import { FileSink } from '../../../toolkit/io/file-sink';
import { FileSource } from '../../../toolkit/io/file-source';
import { HashingSink } from '../../../toolkit/io/hashing-sink';
import { HttpRangeSource } from '../../../toolkit/io/http-range-source';
import { S3MultipartSink } from '../../../toolkit/io/s3-multipart-sink';
import { S3ObjectSource } from '../../../toolkit/io/s3-object-source';
import { makeRawDisk, qemuImg, tempDir, type MadeDisk } from '../../helpers/disk-corpus';
import { startS3Server, type RunningS3Server } from '../../helpers/s3-server';

const MiB = 1024 * 1024;
let dir: string;
let disk: MadeDisk;
let diskBytes: Buffer;

beforeAll(() => {
  dir = tempDir();
  disk = makeRawDisk(dir); // 48 MiB + 12345 bytes: deliberately not a multiple of 512
  diskBytes = readFileSync(disk.path);
});

describe('raw conversion between files', () => {
  it('is byte-identical, keeps the odd size, and reports progress to the end', async () => {
    const source = await FileSource.open(disk.path);
    const out = join(dir, 'out.raw');
    const progress: number[] = [];
    try {
      const result = await convertImage({
        source,
        sink: await FileSink.create(out),
        output: 'raw',
        claimedFormat: 'raw',
        onProgress: (done, total) => {
          expect(total).toBe(disk.size);
          progress.push(done);
        },
      });
      expect(result.info).toMatchObject({ format: 'raw', virtualSize: disk.size, fileSize: disk.size });
      expect(result.bytesWritten).toBe(disk.size);
    } finally {
      await source.close();
    }
    expect(statSync(out).size).toBe(disk.size);
    expect(readFileSync(out).equals(diskBytes)).toBe(true);
    expect(progress.length).toBeGreaterThan(1);
    expect(progress[progress.length - 1]).toBe(disk.size);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);
  });

  it('is byte-identical with a tiny memory limit and one read at a time', async () => {
    const source = await FileSource.open(disk.path);
    const out = join(dir, 'out-small.raw');
    try {
      await convertImage({ source, sink: await FileSink.create(out), output: 'raw', memoryLimitBytes: 256 * 1024, readConcurrency: 1 });
    } finally {
      await source.close();
    }
    expect(readFileSync(out).equals(diskBytes)).toBe(true);
  });

  it('stops on cancellation with a typed error and removes the partial output', async () => {
    const source = await FileSource.open(disk.path);
    const out = join(dir, 'cancelled.raw');
    const controller = new AbortController();
    try {
      await expect(
        convertImage({
          source,
          sink: await FileSink.create(out),
          output: 'raw',
          memoryLimitBytes: 4 * MiB,
          onProgress: () => controller.abort(),
          signal: controller.signal,
        }),
      ).rejects.toBeInstanceOf(ConversionCancelledError);
    } finally {
      await source.close();
    }
    expect(existsSync(out)).toBe(false);
  });
});

describe('format sniffing and claims', () => {
  it('reads an unrecognised file as RAW of exactly its size', async () => {
    const source = await FileSource.open(disk.path);
    try {
      expect(await sniffFormat(source)).toBe('raw');
      const reader = await openImage(source, { maxVirtualSize: 2 ** 40 });
      expect(reader.info.virtualSize).toBe(disk.size);
    } finally {
      await source.close();
    }
  });

  it('refuses a RAW image larger than the configured limit', async () => {
    const source = await FileSource.open(disk.path);
    try {
      await expect(openImage(source, { maxVirtualSize: 32 * MiB })).rejects.toMatchObject({ check: 'virtual-size-too-large' });
    } finally {
      await source.close();
    }
  });

  it('refuses a claim that the bytes contradict, in words a user can act on', async () => {
    const qcow2 = join(dir, 'disk.qcow2');
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', disk.path, qcow2);
    const qcowSource = await FileSource.open(qcow2);
    const rawSource = await FileSource.open(disk.path);
    try {
      const declaredRaw = openImage(qcowSource, { claimedFormat: 'raw' });
      await expect(declaredRaw).rejects.toBeInstanceOf(ImageFormatError);
      await expect(openImage(qcowSource, { claimedFormat: 'raw' })).rejects.toMatchObject({ check: 'format-mismatch' });
      await expect(openImage(qcowSource, { claimedFormat: 'raw' })).rejects.toThrow(/declared RAW but is a QCOW2/);
      await expect(openImage(rawSource, { claimedFormat: 'vmdk' })).rejects.toThrow(/declared VMDK but has no VMDK header/);
    } finally {
      await qcowSource.close();
      await rawSource.close();
    }
  });
});

describe('raw conversion through object storage (s3rver)', () => {
  let server: RunningS3Server;
  beforeAll(async () => {
    server = await startS3Server();
    await server.s3.send(new CreateBucketCommand({ Bucket: 'imports' }));
  });
  afterAll(() => server.stop());

  async function objectBytes(bucket: string, key: string): Promise<Buffer> {
    const response = await server.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await response.Body!.transformToByteArray());
  }

  it("streams an import manifest's parts (presigned GET URLs) into one byte-identical object", async () => {
    // Uneven parts, as an EC2 client would cut them, with a boundary inside the ext4 partition.
    const cuts = [0, 10 * MiB, 10 * MiB + 1, 31 * MiB + 777, 45 * MiB, disk.size];
    const parts = [];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const key = `upload/disk.raw.part${i}`;
      await server.s3.send(new PutObjectCommand({ Bucket: 'imports', Key: key, Body: diskBytes.subarray(cuts[i], cuts[i + 1]) }));
      const url = await getSignedUrl(server.s3, new GetObjectCommand({ Bucket: 'imports', Key: key }), { expiresIn: 3600 });
      parts.push(new HttpRangeSource(url, cuts[i + 1] - cuts[i], key));
    }
    const source = new ConcatenatedSource(parts, 'disk.raw (5 parts)');
    const sink = new HashingSink(new S3MultipartSink(server.s3, 'imports', 'converted/disk.raw', { partSize: 5 * MiB, queueSize: 4 }));
    const result = await convertImage({ source, sink, output: 'raw', claimedFormat: 'raw' });
    expect(result.bytesWritten).toBe(disk.size);
    expect(sink.digestHex()).toBe(createHash('sha256').update(diskBytes).digest('hex'));
    expect((await objectBytes('imports', 'converted/disk.raw')).equals(diskBytes)).toBe(true);
  });

  it('converts S3 object to S3 object', async () => {
    await server.s3.send(new PutObjectCommand({ Bucket: 'imports', Key: 'whole/disk.raw', Body: diskBytes }));
    const source = await S3ObjectSource.open(server.s3, 'imports', 'whole/disk.raw');
    const sink = new S3MultipartSink(server.s3, 'imports', 'whole/out.raw', { partSize: 5 * MiB });
    await convertImage({ source, sink, output: 'raw' });
    expect((await objectBytes('imports', 'whole/out.raw')).equals(diskBytes)).toBe(true);
  });
});
