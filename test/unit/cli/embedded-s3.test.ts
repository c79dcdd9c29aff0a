/**
 * Issue 11, item 2: the embedded S3 answers only signed requests from known keys, each account
 * reaches only its own buckets, and the image store is the service's alone. Real clients
 * (@aws-sdk/client-s3, its presigner, boto3) against the real endpoint.
 */
import { execFile } from 'child_process';
import { createHash } from 'crypto';
import { crc32 } from 'zlib';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'fs';
import { request as httpRequest } from 'http';
import { tmpdir } from 'os';
import { join } from 'path';
import {
  CompleteMultipartUploadCommand, CopyObjectCommand, CreateBucketCommand, CreateMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand,
  HeadObjectCommand, ListBucketsCommand, ListObjectsV2Command, PutObjectCommand, UploadPartCommand, type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { makeS3Client } from '../../../toolkit/io/object-storage';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../cli/embedded-s3';

const SERVICE = { accessKeyId: 'AKIDSERVICE', secretAccessKey: 'service-secret' };
const A = { accountId: '111111111111', accessKeyId: 'AKIDAAAA', secretAccessKey: 'secret-of-a' };
const B = { accountId: '222222222222', accessKeyId: 'AKIDBBBB', secretAccessKey: 'secret-of-b' };
const IMAGES = 'imaging-images';

let dir: string;
let s3: EmbeddedS3;
let clients: { service: S3Client; a: S3Client; b: S3Client; wrong: S3Client; unknown: S3Client };

const client = (key: { accessKeyId: string; secretAccessKey: string }) =>
  makeS3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, ...key });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'embedded-s3-'));
  const accounts = new Map([A, B].map((k) => [k.accessKeyId, k]));
  s3 = await startEmbeddedS3({
    host: '127.0.0.1', port: 0, directory: join(dir, 's3'), serviceKeys: [SERVICE], imageBucket: IMAGES,
    lookupKey: (id) => accounts.get(id),
  });
  clients = {
    service: client(SERVICE), a: client(A), b: client(B),
    wrong: client({ accessKeyId: A.accessKeyId, secretAccessKey: 'not-the-secret' }),
    unknown: client({ accessKeyId: 'AKIDNOBODY', secretAccessKey: 'x' }),
  };
  await clients.service.send(new CreateBucketCommand({ Bucket: IMAGES }));
  await clients.service.send(new PutObjectCommand({ Bucket: IMAGES, Key: 'images/t/disk.raw', Body: 'converted image' }));
  await clients.a.send(new CreateBucketCommand({ Bucket: 'bucket-a' }));
  await clients.a.send(new PutObjectCommand({ Bucket: 'bucket-a', Key: 'disk.part.0', Body: 'part zero of a' }));
  await clients.b.send(new CreateBucketCommand({ Bucket: 'bucket-b' }));
});

afterAll(async () => {
  Object.values(clients ?? {}).forEach((c) => c.destroy());
  await s3?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A raw HTTP request with no signature at all. */
function plain(method: string, path: string, headers: Record<string, string> = {}, body: string | Buffer = ''): Promise<{ status: number; body: string }> {
  const url = new URL(s3.endpoint);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method, path, agent: false, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const fetchUrl = (url: string, method = 'GET') => plain(method, url.slice(s3.endpoint.length));

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(() => undefined, (e) => e);
  expect(err).toBeDefined();
  // A refused HEAD has no body to name the error: its status is what a client sees.
  const { name, $metadata } = err as { name: string; $metadata?: { httpStatusCode?: number } };
  return name === 'Unknown' || name === 'http-403' ? `http-${$metadata?.httpStatusCode}` : name;
}

async function serviceRead(bucket: string, key: string): Promise<string> {
  const res = await clients.service.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return res.Body!.transformToString();
}

/** Every operation, as a client would send it; `bucket` and `key` name an existing object. */
const operations = (bucket: string, key: string, copyFrom = `${bucket}/${key}`) => ({
  list: new ListObjectsV2Command({ Bucket: bucket }),
  get: new GetObjectCommand({ Bucket: bucket, Key: key }),
  head: new HeadObjectCommand({ Bucket: bucket, Key: key }),
  put: new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'overwritten' }),
  delete: new DeleteObjectCommand({ Bucket: bucket, Key: key }),
  'multipart create': new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
  'multipart upload': new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: 'x', PartNumber: 1, Body: 'part' }),
  'multipart complete': new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: 'x', MultipartUpload: { Parts: [{ PartNumber: 1, ETag: '"x"' }] } }),
  copy: new CopyObjectCommand({ Bucket: bucket, Key: `${key}.copy`, CopySource: copyFrom }),
});

describe('anonymous requests are refused for every operation', () => {
  test.each([
    ['list buckets', 'GET', '/'],
    ['list', 'GET', `/${IMAGES}?list-type=2`],
    ['get', 'GET', `/${IMAGES}/images/t/disk.raw`],
    ['head', 'HEAD', `/${IMAGES}/images/t/disk.raw`],
    ['put (overwrite)', 'PUT', `/${IMAGES}/images/t/disk.raw`],
    ['delete', 'DELETE', `/${IMAGES}/images/t/disk.raw`],
    ['multipart create', 'POST', `/${IMAGES}/images/t/x?uploads`],
    ['multipart upload', 'PUT', `/${IMAGES}/images/t/x?partNumber=1&uploadId=abc`],
    ['multipart complete', 'POST', `/${IMAGES}/images/t/x?uploadId=abc`],
    ['copy', 'PUT', `/bucket-a/stolen`],
    ['create bucket', 'PUT', '/anonymous-bucket'],
  ])('%s', async (_name, method, path) => {
    const headers: Record<string, string> = _name === 'copy' ? { 'x-amz-copy-source': `/${IMAGES}/images/t/disk.raw` } : {};
    const res = await plain(method, path, headers, method === 'PUT' || method === 'POST' ? 'evil bytes' : '');
    expect(res.status).toBe(403);
    if (method !== 'HEAD') expect(res.body).toMatch(/<Error><Code>AccessDenied<\/Code><Message>Anonymous access is not allowed/);
    expect(await serviceRead(IMAGES, 'images/t/disk.raw')).toBe('converted image');
  });
});

describe('wrongly signed requests are refused for every operation', () => {
  const ops = Object.keys(operations('bucket-a', 'disk.part.0'));
  test.each(ops)('%s with a wrong secret → SignatureDoesNotMatch; with an unknown key → InvalidAccessKeyId', async (op) => {
    const wrong = (operations('bucket-a', 'disk.part.0') as Record<string, any>)[op];
    const code = await codeOf(clients.wrong.send(wrong));
    expect(code).toBe(op === 'head' ? 'http-403' : 'SignatureDoesNotMatch');
    const unknown = (operations('bucket-a', 'disk.part.0') as Record<string, any>)[op];
    expect(await codeOf(clients.unknown.send(unknown))).toBe(op === 'head' ? 'http-403' : 'InvalidAccessKeyId');
    expect(await serviceRead('bucket-a', 'disk.part.0')).toBe('part zero of a');
  });

  test('a body swapped under a signed x-amz-content-sha256 → XAmzContentSHA256Mismatch, nothing stored', async () => {
    const signer = new SignatureV4({ service: 's3', region: 'us-east-1', credentials: A, sha256: Sha256, uriEscapePath: false });
    const url = new URL(s3.endpoint);
    const body = 'the signed body';
    const hash = createHash('sha256').update(body).digest('hex');
    const signed: any = await signer.sign({
      method: 'PUT', protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: '/bucket-a/disk.part.0', query: {},
      headers: { host: url.host, 'x-amz-content-sha256': hash, 'content-length': String(body.length) }, body,
    } as any);
    const swapped = await plain('PUT', '/bucket-a/disk.part.0', signed.headers as Record<string, string>, 'the other body!');
    expect(swapped.status).toBe(400);
    expect(swapped.body).toContain('<Code>XAmzContentSHA256Mismatch</Code>');
    expect(await serviceRead('bucket-a', 'disk.part.0')).toBe('part zero of a');
    const honest = await plain('PUT', '/bucket-a/honest', signed.headers as Record<string, string>, body);
    expect(honest.status).toBe(403); // signed for another key: the path is signed
    const right = await plain('PUT', '/bucket-a/disk.part.0', signed.headers as Record<string, string>, body);
    expect(right.status).toBe(200);
    expect(await serviceRead('bucket-a', 'disk.part.0')).toBe(body);
    await clients.a.send(new PutObjectCommand({ Bucket: 'bucket-a', Key: 'disk.part.0', Body: 'part zero of a' }));
  });
});

describe('aws-chunked bodies with a checksum trailer (what botocore sends over https)', () => {
  const crc32Of = (data: Buffer) => {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(crc32(data) >>> 0);
    return out.toString('base64');
  };

  /** A PutObject as botocore 1.36+ frames it: STREAMING-UNSIGNED-PAYLOAD-TRAILER, chunks, a CRC32 trailer. */
  async function chunkedPut(key: string, data: Buffer, trailer = crc32Of(data), decodedLength = data.length) {
    const pieces = [data.subarray(0, 7), data.subarray(7)];
    const body = Buffer.concat([
      ...pieces.flatMap((p) => [Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')]),
      Buffer.from(`0\r\nx-amz-checksum-crc32:${trailer}\r\n\r\n`),
    ]);
    const signer = new SignatureV4({ service: 's3', region: 'us-east-1', credentials: A, sha256: Sha256, uriEscapePath: false });
    const url = new URL(s3.endpoint);
    const signed: any = await signer.sign({
      method: 'PUT', protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: `/bucket-a/${key}`, query: {},
      headers: {
        host: url.host, 'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', 'content-encoding': 'aws-chunked',
        'x-amz-decoded-content-length': String(decodedLength), 'x-amz-trailer': 'x-amz-checksum-crc32', 'content-length': String(body.length),
      },
    } as any);
    return plain('PUT', `/bucket-a/${key}`, signed.headers as Record<string, string>, body);
  }

  test('stored as the decoded bytes, not the framing', async () => {
    const data = Buffer.from('a body sent in aws-chunked framing with a CRC32 trailer');
    const res = await chunkedPut('chunked', data);
    expect(res.status).toBe(200);
    expect(await serviceRead('bucket-a', 'chunked')).toBe(data.toString());
  });

  test('a wrong trailing checksum → BadDigest, a wrong decoded length → IncompleteBody; nothing stored', async () => {
    const data = Buffer.from('the bytes the checksum does not match');
    const bad = await chunkedPut('bad-digest', data, crc32Of(Buffer.from('other bytes')));
    expect([bad.status, /<Code>(\w+)<\/Code>/.exec(bad.body)?.[1]]).toEqual([400, 'BadDigest']);
    const short = await chunkedPut('bad-length', data, undefined, data.length + 1);
    expect([short.status, /<Code>(\w+)<\/Code>/.exec(short.body)?.[1]]).toEqual([400, 'IncompleteBody']);
    for (const key of ['bad-digest', 'bad-length']) expect(await codeOf(clients.service.send(new HeadObjectCommand({ Bucket: 'bucket-a', Key: key })))).toMatch(/NotFound|http-404/);
  });
});

describe('accounts and buckets', () => {
  test('account B can neither read nor write A\'s bucket, by any operation', async () => {
    for (const [op, command] of Object.entries(operations('bucket-a', 'disk.part.0'))) {
      expect([op, await codeOf(clients.b.send(command as any))]).toEqual([op, op === 'head' ? 'http-403' : 'AccessDenied']);
    }
    // Copying A's object into B's own bucket is reading A's bucket.
    expect(await codeOf(clients.b.send(new CopyObjectCommand({ Bucket: 'bucket-b', Key: 'stolen', CopySource: 'bucket-a/disk.part.0' })))).toBe('AccessDenied');
    expect(await codeOf(clients.b.send(new CreateBucketCommand({ Bucket: 'bucket-a' })))).toBe('BucketAlreadyExists');
    const listed = await clients.b.send(new ListBucketsCommand({}));
    expect(listed.Buckets!.map((b) => b.Name)).toEqual(['bucket-b']);
    expect(await serviceRead('bucket-a', 'disk.part.0')).toBe('part zero of a');
  });

  test('A works in its own bucket: put, list, copy, multipart', async () => {
    await clients.a.send(new PutObjectCommand({ Bucket: 'bucket-a', Key: 'x/y z+w', Body: 'spaces and plus' }));
    const list = await clients.a.send(new ListObjectsV2Command({ Bucket: 'bucket-a' }));
    expect(list.Contents!.map((c) => c.Key)).toEqual(expect.arrayContaining(['disk.part.0', 'x/y z+w']));
    await clients.a.send(new CopyObjectCommand({ Bucket: 'bucket-a', Key: 'copy', CopySource: 'bucket-a/disk.part.0' }));
    const big = Buffer.alloc(5 * 1024 * 1024 + 17, 7); // spooled to a file before s3rver sees it
    const { UploadId } = await clients.a.send(new CreateMultipartUploadCommand({ Bucket: 'bucket-a', Key: 'big' }));
    const part = await clients.a.send(new UploadPartCommand({ Bucket: 'bucket-a', Key: 'big', UploadId, PartNumber: 1, Body: big }));
    await clients.a.send(new CompleteMultipartUploadCommand({ Bucket: 'bucket-a', Key: 'big', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] } }));
    const got = await clients.a.send(new GetObjectCommand({ Bucket: 'bucket-a', Key: 'big' }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(big)).toBe(true);
    expect(readdirSync(`${join(dir, 's3')}.spool`)).toEqual([]);
  });

  test('the image store: the service reads and writes it; an account can do neither', async () => {
    for (const [op, command] of Object.entries(operations(IMAGES, 'images/t/disk.raw', 'bucket-a/disk.part.0'))) {
      expect([op, await codeOf(clients.a.send(command as any))]).toEqual([op, op === 'head' ? 'http-403' : 'AccessDenied']);
    }
    expect(await serviceRead(IMAGES, 'images/t/disk.raw')).toBe('converted image');
    // The service reads every account's buckets (it fetches what users upload).
    expect(await serviceRead('bucket-a', 'disk.part.0')).toBe('part zero of a');
  });
});

describe('presigned URLs', () => {
  test('A\'s presigned GET, HEAD and DELETE (as the import manifest carries them) work; tampered or expired ones do not', async () => {
    await clients.a.send(new PutObjectCommand({ Bucket: 'bucket-a', Key: 'manifest.xml', Body: '<manifest/>' }));
    const get = await getSignedUrl(clients.a, new GetObjectCommand({ Bucket: 'bucket-a', Key: 'manifest.xml' }), { expiresIn: 3600 });
    const head = await getSignedUrl(clients.a, new HeadObjectCommand({ Bucket: 'bucket-a', Key: 'manifest.xml' }), { expiresIn: 3600 });
    expect(await fetchUrl(get)).toEqual({ status: 200, body: '<manifest/>' });
    expect((await fetchUrl(head, 'HEAD')).status).toBe(200);
    expect((await fetchUrl(get.replace('manifest.xml', 'disk.part.0'))).status).toBe(403);
    expect((await fetchUrl(get, 'DELETE')).status).toBe(403);
    const expired = await getSignedUrl(clients.a, new GetObjectCommand({ Bucket: 'bucket-a', Key: 'manifest.xml' }), { expiresIn: 1, signingDate: new Date(Date.now() - 60_000) });
    const refused = await fetchUrl(expired);
    expect([refused.status, refused.body]).toEqual([403, expect.stringContaining('Request has expired')]);
    const del = await getSignedUrl(clients.a, new DeleteObjectCommand({ Bucket: 'bucket-a', Key: 'manifest.xml' }), { expiresIn: 3600 });
    expect((await fetchUrl(del, 'DELETE')).status).toBe(204);
    expect(await codeOf(clients.a.send(new GetObjectCommand({ Bucket: 'bucket-a', Key: 'manifest.xml' })))).toBe('NoSuchKey');
  });

  test('boto3\'s presigned URL (SigV2 query, its default) and boto3 SigV2 header requests work for A, not for B\'s bucket or past Expires', async () => {
    const script = `
import boto3, json, sys
from botocore.config import Config
job = json.load(sys.stdin)
c = lambda key, v: boto3.client('s3', endpoint_url=job['endpoint'], aws_access_key_id=key['accessKeyId'], aws_secret_access_key=key['secretAccessKey'], region_name='us-east-1', config=Config(signature_version=v, s3={'addressing_style': 'path'}, connect_timeout=5, read_timeout=10, retries={'max_attempts': 1}))
a2 = c(job['a'], 's3')
a2.put_object(Bucket='bucket-a', Key='boto v2/obj+1', Body=b'sigv2 body', ContentType='text/plain')
out = {'v2read': a2.get_object(Bucket='bucket-a', Key='boto v2/obj+1')['Body'].read().decode()}
try:
    c(job['b'], 's3').get_object(Bucket='bucket-a', Key='boto v2/obj+1')
except Exception as e:
    out['bDenied'] = e.response['Error']['Code']
out['url'] = c(job['a'], None).generate_presigned_url('get_object', Params={'Bucket': 'bucket-a', 'Key': 'boto v2/obj+1'}, ExpiresIn=600)
out['longUrl'] = c(job['a'], None).generate_presigned_url('get_object', Params={'Bucket': 'bucket-a', 'Key': 'boto v2/obj+1'}, ExpiresIn=30 * 86400)
print(json.dumps(out))
`;
    // Not execFileSync: the endpoint runs in this process and must keep answering.
    const out = await new Promise<any>((resolve, reject) => {
      const child = execFile('python3', ['-c', script], (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout))));
      child.stdin!.end(JSON.stringify({ endpoint: s3.endpoint, a: A, b: B }));
    });
    expect(out.v2read).toBe('sigv2 body');
    expect(out.bDenied).toBe('AccessDenied');
    expect(out.url).toContain('AWSAccessKeyId=');
    expect(await fetchUrl(out.url)).toEqual({ status: 200, body: 'sigv2 body' });
    expect((await fetchUrl(out.url.replace(/Expires=\d+/, `Expires=${Math.floor(Date.now() / 1000) + 900}`))).status).toBe(403);
    expect((await fetchUrl(out.longUrl)).body).toContain('AuthorizationQueryParametersError');
  });
});

test('objects and directories in the store are private to the service\'s user', () => {
  const walk = (path: string): [string, number][] =>
    readdirSync(path, { withFileTypes: true }).flatMap((e) => {
      const p = join(path, e.name);
      return [[p, statSync(p).mode & 0o777] as [string, number], ...(e.isDirectory() ? walk(p) : [])];
    });
  const entries = walk(join(dir, 's3'));
  expect(entries.length).toBeGreaterThan(5);
  for (const [path, mode] of entries) expect([path, mode & 0o077]).toEqual([path, 0]);
});
