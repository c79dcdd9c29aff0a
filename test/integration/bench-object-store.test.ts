/**
 * The benchmarks' object server (bench/bench-object-store.ts) driven by the clients that use it:
 * the AWS SDK v3, our S3 sink and source, and the AWS CLI. A benchmark is only as good as its
 * server is right: a multipart object must read back byte for byte, across its part files.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { execFile } from 'child_process';
import { readFileSync, rmSync, writeFileSync } from 'fs';
import { join } from 'path';
import { startBenchObjectStore, type BenchObjectStore } from '../../bench/bench-object-store';
import { makeS3Client } from '../../toolkit/io/object-storage';
import { S3MultipartSink } from '../../toolkit/io/s3-multipart-sink';
import { S3ObjectSource } from '../../toolkit/io/s3-object-source';
import { seededBytes, tempDir } from '../helpers/disk-corpus';
import { awsCliPath } from '../helpers/ec2-clients';

const MiB = 1024 * 1024;
const credentials = { region: 'us-east-1', accessKeyId: 'BENCH', secretAccessKey: 'BENCH' };

let dir: string;
let store: BenchObjectStore;
let s3: S3Client;

beforeAll(async () => {
  dir = tempDir('bench-store-');
  store = await startBenchObjectStore(join(dir, 'objects'));
  s3 = makeS3Client({ endpoint: store.endpoint, forcePathStyle: true, ...credentials });
  await s3.send(new CreateBucketCommand({ Bucket: 'bench' }));
});

afterAll(async () => {
  s3.destroy();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function getBytes(key: string, range?: string): Promise<Buffer> {
  const response = await s3.send(new GetObjectCommand({ Bucket: 'bench', Key: key, Range: range }));
  return Buffer.from(await response.Body!.transformToByteArray());
}

describe('bench object store through the AWS SDK', () => {
  // Three parts of 5 MiB, 5 MiB and a short tail, sent last-first and at once.
  const parts = [seededBytes(5 * MiB, 1), seededBytes(5 * MiB, 2), seededBytes(MiB + 123, 3)];
  const whole = Buffer.concat(parts);

  beforeAll(async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'bench', Key: 'multi/part.bin' }));
    const order = [3, 1, 2];
    const etags = await Promise.all(
      order.map(async (partNumber) => {
        const response = await s3.send(new UploadPartCommand({ Bucket: 'bench', Key: 'multi/part.bin', UploadId, PartNumber: partNumber, Body: parts[partNumber - 1] }));
        return { PartNumber: partNumber, ETag: response.ETag };
      }),
    );
    etags.sort((a, b) => a.PartNumber - b.PartNumber);
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'bench', Key: 'multi/part.bin', UploadId, MultipartUpload: { Parts: etags } }));
  });

  it('reads a multipart object back whole, with its size in HEAD', async () => {
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'bench', Key: 'multi/part.bin' }));
    expect(head.ContentLength).toBe(whole.length);
    expect(head.ETag).toMatch(/^"[0-9a-f]+-3"$/);
    expect(head.LastModified).toBeInstanceOf(Date);
    expect((await getBytes('multi/part.bin')).equals(whole)).toBe(true);
  });

  it('serves ranges inside a part and across part boundaries', async () => {
    const ranges: [number, number][] = [
      [0, 99],
      [5 * MiB - 10, 5 * MiB + 9], // parts 1 | 2
      [5 * MiB - 1, 10 * MiB], // the last byte of part 1 to the first of part 3
      [3 * MiB, whole.length - 1], // three parts, to the end
    ];
    for (const [start, end] of ranges) {
      const response = await s3.send(new GetObjectCommand({ Bucket: 'bench', Key: 'multi/part.bin', Range: `bytes=${start}-${end}` }));
      expect(response.ContentRange).toBe(`bytes ${start}-${end}/${whole.length}`);
      expect(Buffer.from(await response.Body!.transformToByteArray()).equals(whole.subarray(start, end + 1))).toBe(true);
    }
    expect((await getBytes('multi/part.bin', 'bytes=-1000')).equals(whole.subarray(whole.length - 1000))).toBe(true);
    expect((await getBytes('multi/part.bin', `bytes=${whole.length - 5}-${whole.length + 100}`)).equals(whole.subarray(whole.length - 5))).toBe(true);
  });

  it('refuses a range past the end, a missing key, a missing bucket and a stale If-Match', async () => {
    await expect(getBytes('multi/part.bin', `bytes=${whole.length}-${whole.length + 10}`)).rejects.toMatchObject({ name: 'InvalidRange', $metadata: { httpStatusCode: 416 } });
    await expect(getBytes('no/such/key')).rejects.toMatchObject({ name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } });
    await expect(s3.send(new HeadObjectCommand({ Bucket: 'bench', Key: 'no/such/key' }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
    await expect(s3.send(new GetObjectCommand({ Bucket: 'no-such-bucket', Key: 'x' }))).rejects.toMatchObject({ name: 'NoSuchBucket' });
    await expect(s3.send(new GetObjectCommand({ Bucket: 'bench', Key: 'multi/part.bin', IfMatch: '"stale"' }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 412 } });
  });

  it('keeps serving after a client drops a GET halfway', async () => {
    const response = await s3.send(new GetObjectCommand({ Bucket: 'bench', Key: 'multi/part.bin' }));
    const body = response.Body as NodeJS.ReadableStream & { destroy(): void };
    await new Promise((resolve) => body.once('data', resolve));
    body.destroy();
    expect((await getBytes('multi/part.bin', 'bytes=100-199')).equals(whole.subarray(100, 200))).toBe(true);
  });

  it('reuses the files of removed objects, but not under a GET still reading them', async () => {
    const first = seededBytes(8 * MiB, 21);
    await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: 'reused', Body: first }));
    const reading = await s3.send(new GetObjectCommand({ Bucket: 'bench', Key: 'reused' }));
    const second = seededBytes(MiB + 1, 22);
    const other = seededBytes(3 * MiB, 23);
    await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: 'reused', Body: second }));
    await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: 'other', Body: other }));
    expect(Buffer.from(await reading.Body!.transformToByteArray()).equals(first)).toBe(true);

    await s3.send(new DeleteObjectCommand({ Bucket: 'bench', Key: 'other' }));
    const shorter = seededBytes(1000, 24); // into a spare file three MiB long
    await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: 'shorter', Body: shorter }));
    expect((await getBytes('shorter')).equals(shorter)).toBe(true);
    expect((await getBytes('reused')).equals(second)).toBe(true);
  });

  it('puts, replaces and deletes single-part objects', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: 'small.txt', Body: 'first' }));
    await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: 'small.txt', Body: 'second version' }));
    expect((await getBytes('small.txt')).toString()).toBe('second version');
    await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: 'empty', Body: Buffer.alloc(0) }));
    expect((await getBytes('empty')).length).toBe(0);
    await s3.send(new DeleteObjectCommand({ Bucket: 'bench', Key: 'small.txt' }));
    await expect(getBytes('small.txt')).rejects.toMatchObject({ name: 'NoSuchKey' });
  });

  it('aborts an upload: its parts are gone and it cannot be completed', async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'bench', Key: 'aborted.bin' }));
    const { ETag } = await s3.send(new UploadPartCommand({ Bucket: 'bench', Key: 'aborted.bin', UploadId, PartNumber: 1, Body: seededBytes(1000, 4) }));
    await s3.send(new AbortMultipartUploadCommand({ Bucket: 'bench', Key: 'aborted.bin', UploadId }));
    const complete = s3.send(new CompleteMultipartUploadCommand({ Bucket: 'bench', Key: 'aborted.bin', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag }] } }));
    await expect(complete).rejects.toMatchObject({ name: 'NoSuchUpload' });
    await expect(getBytes('aborted.bin')).rejects.toMatchObject({ name: 'NoSuchKey' });
  });

  it('copies parts from ranges of other objects (UploadPartCopy), honouring the copy source If-Match', async () => {
    const source = seededBytes(7 * MiB, 31);
    const { ETag: sourceETag } = await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: 'copy/source one.bin', Body: source }));
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'bench', Key: 'copy/target.bin' }));
    const target = { Bucket: 'bench', Key: 'copy/target.bin', UploadId };
    const copySource = 'bench/copy/source%20one.bin';
    // Part 1 is a range across the multipart object's parts 1 | 2; part 2 a range of a single-file
    // object (its key URL-encoded); part 3 that whole object, copied without a range.
    const copied = await s3.send(new UploadPartCopyCommand({ ...target, PartNumber: 1, CopySource: 'bench/multi/part.bin', CopySourceRange: `bytes=${MiB}-${6 * MiB - 1}` }));
    expect(copied.CopyPartResult?.ETag).toMatch(/^"[0-9a-f]+"$/);
    expect(copied.CopyPartResult?.LastModified).toBeInstanceOf(Date);
    const second = await s3.send(
      new UploadPartCopyCommand({ ...target, PartNumber: 2, CopySource: copySource, CopySourceRange: `bytes=100-${5 * MiB + 99}`, CopySourceIfMatch: sourceETag }),
    );
    const third = await s3.send(new UploadPartCopyCommand({ ...target, PartNumber: 3, CopySource: `/${copySource}` }));
    await expect(s3.send(new UploadPartCopyCommand({ ...target, PartNumber: 4, CopySource: copySource, CopySourceIfMatch: '"stale"' }))).rejects.toMatchObject({
      name: 'PreconditionFailed',
      $metadata: { httpStatusCode: 412 },
    });
    await expect(s3.send(new UploadPartCopyCommand({ ...target, PartNumber: 4, CopySource: 'bench/no/such/key' }))).rejects.toMatchObject({ name: 'NoSuchKey' });
    await expect(s3.send(new CopyObjectCommand({ Bucket: 'bench', Key: 'copy/plain.bin', CopySource: copySource }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 501 } });
    const Parts = [copied, second, third].map((response, i) => ({ PartNumber: i + 1, ETag: response.CopyPartResult!.ETag }));
    await s3.send(new CompleteMultipartUploadCommand({ ...target, MultipartUpload: { Parts } }));
    const expected = Buffer.concat([whole.subarray(MiB, 6 * MiB), source.subarray(100, 5 * MiB + 100), source]);
    expect((await getBytes('copy/target.bin')).equals(expected)).toBe(true);
  });

  it('refuses to complete with parts below 5 MiB that are not the last', async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'bench', Key: 'tiny-parts.bin' }));
    const sent = await Promise.all(
      [1, 2].map(async (PartNumber) => ({ PartNumber, ETag: (await s3.send(new UploadPartCommand({ Bucket: 'bench', Key: 'tiny-parts.bin', UploadId, PartNumber, Body: seededBytes(100, PartNumber) }))).ETag })),
    );
    await expect(s3.send(new CompleteMultipartUploadCommand({ Bucket: 'bench', Key: 'tiny-parts.bin', UploadId, MultipartUpload: { Parts: sent } }))).rejects.toMatchObject({ name: 'EntityTooSmall' });
  });
});

describe('bench object store through our S3 sink and source', () => {
  it('reads back what S3MultipartSink wrote, whole and across parts', async () => {
    const data = Buffer.concat([seededBytes(12 * MiB + 4321, 7), Buffer.alloc(3 * MiB), seededBytes(2 * MiB, 8)]);
    const sink = new S3MultipartSink(s3, 'bench', 'sink/out.raw', { partSize: 5 * MiB, queueSize: 3 });
    const randomEnd = data.length - 5 * MiB;
    for (let at = 0; at < randomEnd; at += 777_777) await sink.write(data.subarray(at, Math.min(at + 777_777, randomEnd)));
    await sink.writeZeros(3 * MiB);
    await sink.write(data.subarray(data.length - 2 * MiB));
    expect(await sink.finish()).toEqual({ size: data.length });

    const source = await S3ObjectSource.open(s3, 'bench', 'sink/out.raw');
    expect(source.size).toBe(data.length);
    expect((await source.read(0, data.length)).equals(data)).toBe(true);
    for (const offset of [5 * MiB - 3, 10 * MiB - 1, 15 * MiB - 100_000]) {
      expect((await source.read(offset, 200_000)).equals(data.subarray(offset, offset + 200_000))).toBe(true);
    }
    const into = Buffer.alloc(MiB);
    await source.readInto(data.length - MiB, into);
    expect(into.equals(data.subarray(data.length - MiB))).toBe(true);
    await source.close();
  });
});

const cli = awsCliPath();
(cli ? describe : describe.skip)('bench object store through the AWS CLI', () => {
  function aws(args: string[]): Promise<void> {
    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('AWS_')) env[name] = value;
    Object.assign(env, {
      AWS_ACCESS_KEY_ID: 'BENCH',
      AWS_SECRET_ACCESS_KEY: 'BENCH',
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_PAGER: '',
    });
    return new Promise((resolve, reject) => {
      execFile(cli!, ['s3', ...args, '--endpoint-url', store.endpoint, '--no-progress'], { env, timeout: 60_000 }, (error, _stdout, stderr) =>
        error ? reject(new Error(`aws s3 ${args.join(' ')}: ${stderr || error.message}`)) : resolve(),
      );
    });
  }

  it('uploads and downloads a 20 MiB file with aws s3 cp (multipart both ways)', async () => {
    const data = seededBytes(20 * MiB + 5, 9);
    writeFileSync(join(dir, 'cli-in.bin'), data);
    await aws(['cp', join(dir, 'cli-in.bin'), 's3://bench/cli/file.bin']);
    expect((await s3.send(new HeadObjectCommand({ Bucket: 'bench', Key: 'cli/file.bin' }))).ContentLength).toBe(data.length);
    await aws(['cp', 's3://bench/cli/file.bin', join(dir, 'cli-out.bin')]);
    expect(readFileSync(join(dir, 'cli-out.bin')).equals(data)).toBe(true);
  });
});
