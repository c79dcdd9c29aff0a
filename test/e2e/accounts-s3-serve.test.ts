/**
 * Issues 11 (item 2) and 12: the embedded S3 of `imaging serve` is wired to the account store.
 * Only requests signed by a known account's key (or the service's own) are accepted, each
 * account reaches only the buckets it created, the image store is the service's alone (not even
 * the bootstrap administrator's), and an account made with `imaging account create` imports
 * through its own bucket end to end. Real clients: @aws-sdk/client-s3, boto3, the EC2 API by boto3.
 */
import { execFile } from 'child_process';
import { request as httpRequest } from 'http';
import {
  CompleteMultipartUploadCommand, CopyObjectCommand, CreateBucketCommand, CreateMultipartUploadCommand, DeleteBucketCommand, DeleteObjectCommand,
  GetObjectCommand, HeadObjectCommand, ListBucketsCommand, ListObjectsV2Command, PutObjectCommand, UploadPartCommand, type S3Client,
} from '@aws-sdk/client-s3';
import type { RunningService } from '../../cli/serve';
import { createAccount, type NewAccount } from '../../gateway/accounts';
import { makeS3Client } from '../../toolkit/io/object-storage';
import { makeRawDisk, tempDir } from '../helpers/disk-corpus';
import { boto3Call } from '../helpers/ec2-clients';
import { fileSha256, objectBytes, sha256, startTestService, upload, waitForTask, type Endpoints } from './import-driver';

const IMAGES = 'imaging-images';

let service: RunningService;
let endpoints: Endpoints;
let a: NewAccount;
let b: NewAccount;
let clients: { a: S3Client; b: S3Client; admin: S3Client; wrong: S3Client; unknown: S3Client };
let imageKey: string;
let disk: { path: string; size: number };

const s3For = (key: { accessKeyId: string; secretAccessKey: string }) =>
  makeS3Client({ endpoint: service.s3Endpoint, region: 'us-east-1', forcePathStyle: true, accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey });
const endpointsOf = (account: NewAccount): Endpoints => ({ ...endpoints, creds: { accessKeyId: account.accessKeyId, secretAccessKey: account.secretAccessKey } });

beforeAll(async () => {
  const dir = tempDir('accounts-s3-');
  disk = makeRawDisk(dir);
  ({ service, endpoints } = await startTestService(dir));
  a = await createAccount(service.tasks, 'alice');
  b = await createAccount(service.tasks, 'bob');
  clients = {
    a: s3For(a), b: s3For(b), admin: s3For(endpoints.creds),
    wrong: s3For({ accessKeyId: a.accessKeyId, secretAccessKey: 'not-the-secret-of-a' }),
    unknown: s3For({ accessKeyId: 'AKIDNOBODYKNOWS', secretAccessKey: 'x' }),
  };
  await clients.a.send(new CreateBucketCommand({ Bucket: 'alice-bucket' }));
  await clients.a.send(new PutObjectCommand({ Bucket: 'alice-bucket', Key: 'disk.part.0', Body: 'part zero of alice' }));
  await clients.b.send(new CreateBucketCommand({ Bucket: 'bob-bucket' }));
}, 60_000);

afterAll(async () => {
  Object.values(clients ?? {}).forEach((c) => c.destroy());
  await service?.stop();
});

/** A request with no signature at all. */
function plain(method: string, path: string, headers: Record<string, string> = {}, body = ''): Promise<{ status: number; body: string }> {
  const url = new URL(service.s3Endpoint);
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

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(() => undefined, (e) => e);
  expect(err).toBeDefined();
  const { name, $metadata } = err as { name: string; $metadata?: { httpStatusCode?: number } };
  return name === 'Unknown' || /^http-|^\d+$|^Forbidden$/.test(name) ? `http-${$metadata?.httpStatusCode}` : name;
}

/** What the service sees of an object: its bytes when small, else its ETag and time (an image is too large to read each time). */
async function serviceRead(bucket: string, key: string): Promise<string> {
  if (bucket !== IMAGES) return (await objectBytes(service.s3, bucket, key)).toString();
  const head = await service.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  return `${head.ETag} ${head.ContentLength} ${head.LastModified?.toISOString()}`;
}

/** Every operation on `bucket`/`key`, as a client sends it. */
const operations = (bucket: string, key: string): Record<string, any> => ({
  list: new ListObjectsV2Command({ Bucket: bucket }),
  get: new GetObjectCommand({ Bucket: bucket, Key: key }),
  head: new HeadObjectCommand({ Bucket: bucket, Key: key }),
  put: new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'overwritten' }),
  delete: new DeleteObjectCommand({ Bucket: bucket, Key: key }),
  'multipart create': new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
  'multipart upload': new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: 'x', PartNumber: 1, Body: 'part' }),
  'multipart complete': new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: 'x', MultipartUpload: { Parts: [{ PartNumber: 1, ETag: '"x"' }] } }),
  'delete bucket': new DeleteBucketCommand({ Bucket: bucket }),
});
const OPS = Object.keys(operations('x', 'y'));

describe('an import by an account of the store, end to end through its own bucket', () => {
  test('alice uploads to her bucket with her key and ImportVolume (boto3) completes; the image store has the bytes', async () => {
    const up = await upload(endpointsOf(a), disk.path, 'alice-bucket');
    const out = await boto3Call(endpoints.ec2, endpointsOf(a).creds, 'ImportVolume', {
      Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl },
      Volume: { Size: up.volumeSizeGiB },
      AvailabilityZone: 'local-1a',
    });
    const done = await waitForTask(endpointsOf(a), out.ConversionTask.ConversionTaskId);
    expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
    const doc = await service.tasks.get(out.ConversionTask.ConversionTaskId);
    expect(doc!.accountId).toBe(a.accountId);
    imageKey = doc!.artifacts.image!.key;
    expect(doc!.artifacts.image!.bucket).toBe(IMAGES);
    expect(sha256(await objectBytes(service.s3, IMAGES, imageKey))).toBe(fileSha256(disk.path));
  }, 120_000);
});

describe('anonymous and wrongly signed requests are refused for every operation', () => {
  test.each([
    ['list buckets', 'GET', '/'],
    ['list', 'GET', `/${IMAGES}?list-type=2`],
    ['get', 'GET', `/${IMAGES}/IMAGE`],
    ['head', 'HEAD', `/${IMAGES}/IMAGE`],
    ['put (overwrite)', 'PUT', `/${IMAGES}/IMAGE`],
    ['delete', 'DELETE', `/${IMAGES}/IMAGE`],
    ['multipart create', 'POST', `/${IMAGES}/IMAGE?uploads`],
    ['multipart upload', 'PUT', `/${IMAGES}/IMAGE?partNumber=1&uploadId=abc`],
    ['multipart complete', 'POST', `/${IMAGES}/IMAGE?uploadId=abc`],
    ['get from an account bucket', 'GET', '/alice-bucket/disk.part.0'],
    ['put into an account bucket', 'PUT', '/alice-bucket/disk.part.0'],
    ['create bucket', 'PUT', '/anonymous-bucket'],
  ])('anonymous %s → 403', async (_name, method, pathTemplate) => {
    const before = await serviceRead(IMAGES, imageKey);
    const res = await plain(method, pathTemplate.replace('IMAGE', imageKey), {}, method === 'PUT' || method === 'POST' ? 'evil bytes' : '');
    expect(res.status).toBe(403);
    if (method !== 'HEAD') expect(res.body).toContain('<Code>AccessDenied</Code>');
    expect(await serviceRead(IMAGES, imageKey)).toBe(before);
    expect(await serviceRead('alice-bucket', 'disk.part.0')).toBe('part zero of alice');
  });

  test.each(OPS)('%s with a wrong secret → SignatureDoesNotMatch, with an unknown key → InvalidAccessKeyId', async (op) => {
    const head = op === 'head';
    expect(await codeOf(clients.wrong.send(operations('alice-bucket', 'disk.part.0')[op]))).toBe(head ? 'http-403' : 'SignatureDoesNotMatch');
    expect(await codeOf(clients.unknown.send(operations('alice-bucket', 'disk.part.0')[op]))).toBe(head ? 'http-403' : 'InvalidAccessKeyId');
    expect(await serviceRead('alice-bucket', 'disk.part.0')).toBe('part zero of alice');
  });

  test('a deleted key signs nothing any more', async () => {
    const c = await createAccount(service.tasks, 'carol');
    const carol = s3For(c);
    await carol.send(new CreateBucketCommand({ Bucket: 'carol-bucket' }));
    await service.tasks.deleteKey(c.accessKeyId);
    expect(await codeOf(carol.send(new ListObjectsV2Command({ Bucket: 'carol-bucket' })))).toBe('InvalidAccessKeyId');
    carol.destroy();
  });
});

describe('accounts are apart', () => {
  test.each(OPS)("bob's %s on alice's bucket → AccessDenied, nothing changed", async (op) => {
    const code = await codeOf(clients.b.send(operations('alice-bucket', 'disk.part.0')[op]));
    expect(code).toBe(op === 'head' ? 'http-403' : 'AccessDenied');
    expect(await serviceRead('alice-bucket', 'disk.part.0')).toBe('part zero of alice');
  });

  test.each(OPS)("%s on the image store by alice (whose image it is), by bob and by the bootstrap administrator → AccessDenied", async (op) => {
    const before = await serviceRead(IMAGES, imageKey);
    for (const client of [clients.a, clients.b, clients.admin]) {
      expect(await codeOf(client.send(operations(IMAGES, imageKey)[op]))).toBe(op === 'head' ? 'http-403' : 'AccessDenied');
    }
    expect(await serviceRead(IMAGES, imageKey)).toBe(before);
  });

  test("bob cannot copy alice's object into his own bucket, nor take her bucket's name", async () => {
    expect(await codeOf(clients.b.send(new CopyObjectCommand({ Bucket: 'bob-bucket', Key: 'stolen', CopySource: 'alice-bucket/disk.part.0' })))).toBe('AccessDenied');
    expect(await codeOf(clients.b.send(new CopyObjectCommand({ Bucket: 'bob-bucket', Key: 'stolen', CopySource: `${IMAGES}/${imageKey}` })))).toBe('AccessDenied');
    expect(await codeOf(clients.b.send(new CreateBucketCommand({ Bucket: 'alice-bucket' })))).toBe('BucketAlreadyExists');
    expect(await codeOf(clients.b.send(new CreateBucketCommand({ Bucket: IMAGES })))).toBe('AccessDenied');
  });

  test('ListBuckets shows each account only its own buckets', async () => {
    const names = async (client: S3Client) => ((await client.send(new ListBucketsCommand({}))).Buckets ?? []).map((x) => x.Name).sort();
    expect(await names(clients.a)).toEqual(['alice-bucket']);
    expect(await names(clients.b)).toEqual(['bob-bucket']);
    expect(await names(clients.admin)).not.toContain(IMAGES);
  });

  test("boto3 as bob: get_object and put_object on alice's bucket are refused with AccessDenied", async () => {
    const script = String.raw`
import json, sys, boto3
from botocore.config import Config
from botocore.exceptions import ClientError
job = json.load(sys.stdin)
s3 = boto3.client("s3", endpoint_url=job["endpoint"], region_name="us-east-1", aws_access_key_id=job["key"], aws_secret_access_key=job["secret"],
                  config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
out = {}
for name, call in [("get", lambda: s3.get_object(Bucket="alice-bucket", Key="disk.part.0")),
                   ("put", lambda: s3.put_object(Bucket="alice-bucket", Key="disk.part.0", Body=b"bob was here")),
                   ("own", lambda: s3.put_object(Bucket="bob-bucket", Key="mine", Body=b"bob's own"))]:
    try:
        call(); out[name] = "ok"
    except ClientError as e:
        out[name] = e.response["Error"]["Code"]
print(json.dumps(out))
`;
    const out = await new Promise<string>((resolve, reject) => {
      const child = execFile('python3', ['-c', script], (err, stdout, stderr) => (err ? reject(new Error(stderr || String(err))) : resolve(stdout)));
      child.stdin!.end(JSON.stringify({ endpoint: service.s3Endpoint, key: b.accessKeyId, secret: b.secretAccessKey }));
    });
    expect(JSON.parse(out)).toEqual({ get: 'AccessDenied', put: 'AccessDenied', own: 'ok' });
    expect(await serviceRead('alice-bucket', 'disk.part.0')).toBe('part zero of alice');
  });
});
