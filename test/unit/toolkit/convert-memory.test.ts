/**
 * Bounded memory, end to end: a 1 GiB raw image (sparse on disk; a raw source has no map, so
 * every byte is read) converted into S3 through multipart upload, sampling this process's RSS.
 * The bound is generous on purpose (the S3 server runs in this process too); the benchmark
 * reports real figures.
 */
import { CreateBucketCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { execFileSync } from 'child_process';
import { closeSync, openSync, writeSync } from 'fs';
import { join } from 'path';
import { convertImage } from '../../../toolkit/convert/convert-image';
import { FileSource } from '../../../toolkit/io/file-source';
import { S3MultipartSink } from '../../../toolkit/io/s3-multipart-sink';
import { seededBytes, tempDir } from '../../helpers/disk-corpus';
import { startS3Server, type RunningS3Server } from '../../helpers/s3-server';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('conversion memory', () => {
  let server: RunningS3Server;
  beforeAll(async () => {
    server = await startS3Server();
    await server.s3.send(new CreateBucketCommand({ Bucket: 'memory' }));
  });
  afterAll(() => server.stop());

  it('converts a 1 GiB raw image into S3 without holding it in memory', async () => {
    const path = join(tempDir(), 'big.raw');
    execFileSync('truncate', ['-s', String(GiB), path]);
    // Some real data scattered through the sparse file, so it is not all zeros.
    const fd = openSync(path, 'r+');
    for (let i = 0; i < 16; i++) writeSync(fd, seededBytes(MiB, i + 1), 0, MiB, i * 64 * MiB + 12345);
    closeSync(fd);

    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const source = await FileSource.open(path);
    try {
      const result = await convertImage({
        source,
        sink: new S3MultipartSink(server.s3, 'memory', 'big.raw', { partSize: 16 * MiB, queueSize: 4 }),
        output: 'raw',
        memoryLimitBytes: 128 * MiB,
      });
      expect(result.bytesWritten).toBe(GiB);
    } finally {
      clearInterval(sampler);
      await source.close();
    }
    const head = await server.s3.send(new HeadObjectCommand({ Bucket: 'memory', Key: 'big.raw' }));
    expect(head.ContentLength).toBe(GiB);
    expect(peak - baseline).toBeLessThan(600 * MiB);
  }, 300_000);
});
