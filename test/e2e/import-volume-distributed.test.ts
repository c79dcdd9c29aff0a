/**
 * The same import path with every part in its own process: the gateway (`imaging gateway`) and
 * each stage (`functions/host/main.js`) connected through a real nats-server with JetStream, the
 * MongoDB-wire test server (or MONGODB_URI) and a real S3 server; driven by boto3 and
 * @aws-sdk/client-ec2, with byte comparison.
 */
import { spawn, type ChildProcess } from 'child_process';
import { join } from 'path';
import { ImportVolumeCommand, DescribeConversionTasksCommand } from '@aws-sdk/client-ec2';
import { makeRawDisk, tempDir } from '../helpers/disk-corpus';
import { startNatsServer, type RunningNatsServer } from '../helpers/nats-server';
import { startMongoServer, type RunningMongoServer } from '../helpers/mongo-server';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { boto3Call, sdkClient } from '../helpers/ec2-clients';
import { openTaskStore } from '../../tasks/open-store';
import type { TaskStore } from '../../tasks/store';
import { fileSha256, objectBytes, sha256, upload, waitForTask, type Endpoints } from './import-driver';

const DIST = join(__dirname, '../../dist');
const STAGES = ['manifest', 'decrypt', 'convert', 'validate', 'boot-check', 'register'];
const creds = { accessKeyId: 'AKIADISTRIBUTED01', secretAccessKey: 'distributed-secret-key-0123456789', region: 'us-east-1' };

let nats: RunningNatsServer;
let mongo: RunningMongoServer;
let s3: RunningS3Server;
let tasks: TaskStore;
const children: ChildProcess[] = [];
let endpoints: Endpoints;
let disk: { path: string; size: number };
const dbName = `imaging_e2e_${process.pid}`;

function commonEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    IMAGING_NATS_URL: nats.url,
    IMAGING_MONGODB_URI: mongo.uri,
    IMAGING_MONGODB_DB: dbName,
    IMAGING_S3_ENDPOINT: s3.endpoint,
    IMAGING_S3_ACCESS_KEY_ID: s3.accessKeyId,
    IMAGING_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    IMAGING_IMAGE_BUCKET: 'imaging-images',
    IMAGING_UPLOAD_POLL_MS: '200',
    IMAGING_LOG_LEVEL: 'warn',
    IMAGING_ADMIN_PORT: '0',
  };
}

function startProcess(args: string[], env: NodeJS.ProcessEnv, ready?: RegExp): Promise<string> {
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stderr!.on('data', (d) => (output += d));
  return new Promise((resolve, reject) => {
    if (!ready) return setTimeout(() => resolve(''), 0);
    child.stdout!.on('data', (d) => {
      output += d;
      const m = ready.exec(output);
      if (m) resolve(m[1] ?? m[0]);
    });
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}: ${output}`)));
  });
}

beforeAll(async () => {
  [nats, mongo, s3] = await Promise.all([startNatsServer(), startMongoServer(), startS3Server()]);
  tasks = await openTaskStore(mongo.uri, { mongoDbName: dbName });
  // The user signs S3 requests with the same key pair as EC2 requests; s3rver must know it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- s3rver has no type declarations
  require('s3rver/lib/models/account').DUMMY_ACCOUNT.createKeyPair(creds.accessKeyId, creds.secretAccessKey);
  const env = commonEnv();
  for (const stage of STAGES) {
    await startProcess([join(DIST, 'functions/host/main.js')], { ...env, IMAGING_STAGE: stage, IMAGING_HOST_MODE: 'jetstream' });
  }
  const ec2 = await startProcess([join(DIST, 'cli/main.js'), 'gateway'], {
    ...env,
    IMAGING_PORT: '0',
    IMAGING_ACCESS_KEY_ID: creds.accessKeyId,
    IMAGING_SECRET_ACCESS_KEY: creds.secretAccessKey,
    IMAGING_ACCOUNT_ID: '123456789012',
  }, /EC2 endpoint:\s+(\S+)/);
  endpoints = { ec2, s3: s3.endpoint, creds };
  disk = makeRawDisk(tempDir('e2e-dist-'));
});

afterAll(async () => {
  for (const child of children) child.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
  await tasks?.close();
  await Promise.all([nats?.stop(), mongo?.stop(), s3?.stop()]);
});

test('boto3 over the distributed pipeline: RAW import completes with identical bytes', async () => {
  const up = await upload(endpoints, disk.path, 'dist-bucket');
  const out = await boto3Call(endpoints.ec2, creds, 'ImportVolume', {
    Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB }, AvailabilityZone: 'z',
  });
  const taskId = out.ConversionTask.ConversionTaskId;
  const done = await waitForTask(endpoints, taskId);
  expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
  expect(done.ImportVolume.Image.Checksum).toBe(fileSha256(disk.path));
  const doc = await tasks.get(taskId);
  expect(doc!.history.map((h) => h.to)).toEqual(['pending-upload', 'manifest-received', 'bundle-decrypted', 'disk-converted', 'validated', 'boot-checked', 'completed']);
  const stored = await objectBytes(s3.s3, doc!.artifacts.image!.bucket, doc!.artifacts.image!.key);
  expect(sha256(stored)).toBe(fileSha256(disk.path));
});

test('@aws-sdk/client-ec2 over the distributed pipeline, two imports at once', async () => {
  const ec2 = sdkClient(endpoints.ec2, creds);
  const ids = await Promise.all(['a/', 'b/'].map(async (prefix) => {
    const up = await upload(endpoints, disk.path, 'dist-bucket', { prefix });
    const created = await ec2.send(new ImportVolumeCommand({ Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: 1 }, AvailabilityZone: 'z' }));
    return created.ConversionTask!.ConversionTaskId!;
  }));
  for (const id of ids) expect(await waitForTask(endpoints, id)).toMatchObject({ State: 'completed', StatusMessage: '' });
  const described = await ec2.send(new DescribeConversionTasksCommand({ ConversionTaskIds: ids }));
  expect(described.ConversionTasks!.map((t) => t.State)).toEqual(['completed', 'completed']);
  for (const t of described.ConversionTasks!) expect(t.ImportVolume!.Image!.Checksum).toBe(fileSha256(disk.path));
});

test('a bad manifest fails its task with a message; the pipeline keeps serving', async () => {
  const { putWithUrl } = await import('./import-driver');
  const url = await putWithUrl(s3.s3, 'dist-bucket', 'broken.xml', '<manifest><version>2010-11-15</version></manifest>');
  const out = await boto3Call(endpoints.ec2, creds, 'ImportVolume', { Image: { Format: 'RAW', Bytes: 10, ImportManifestUrl: url }, Volume: { Size: 1 }, AvailabilityZone: 'z' });
  const task = await waitForTask(endpoints, out.ConversionTask.ConversionTaskId);
  expect(task.State).toBe('cancelled');
  expect(task.StatusMessage).toMatch(/^ClientError: the import manifest has no <file-format>/);
});
