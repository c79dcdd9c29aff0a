/**
 * Waiting for an upload holds no worker (issue #10 item 5), distributed: every stage its own
 * process on a real nats-server, with ONE manifest replica working on one delivery at a time, the
 * gateway process, jongodb and s3rver. First an uploaded import alone is timed to completion; then
 * ten imports whose manifests never arrive are started, then the same uploaded import: it
 * completes as if alone (within twice its time alone plus 5 s), and the ten still wait.
 */
import { spawn, type ChildProcess } from 'child_process';
import { join } from 'path';
import { ImportVolumeCommand } from '@aws-sdk/client-ec2';
import { makeRawDisk, tempDir } from '../helpers/disk-corpus';
import { startNatsServer, type RunningNatsServer } from '../helpers/nats-server';
import { startMongoServer, type RunningMongoServer } from '../helpers/mongo-server';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { sdkClient } from '../helpers/ec2-clients';
import { openTaskStore } from '../../tasks/open-store';
import type { TaskStore } from '../../tasks/store';
import { fileSha256, upload, waitForTask, type Endpoints } from './import-driver';

jest.setTimeout(240_000);

const DIST = join(__dirname, '../../dist');
const STAGES = ['manifest', 'decrypt', 'convert', 'validate', 'register'];
const creds = { accessKeyId: 'AKIAWAITINGUPLOAD1', secretAccessKey: 'waiting-upload-secret-key-012345', region: 'us-east-1' };

let nats: RunningNatsServer;
let mongo: RunningMongoServer;
let s3: RunningS3Server;
let tasks: TaskStore;
const children: ChildProcess[] = [];
let endpoints: Endpoints;
const dbName = `imaging_waiting_${process.pid}`;

function startProcess(args: string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<string> {
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  return new Promise((resolve, reject) => {
    const look = (d: Buffer) => {
      output += d;
      const m = ready.exec(output);
      if (m) resolve(m[1] ?? m[0]);
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}: ${output}`)));
  });
}

beforeAll(async () => {
  [nats, mongo, s3] = await Promise.all([startNatsServer(), startMongoServer(), startS3Server()]);
  tasks = await openTaskStore(mongo.uri, { mongoDbName: dbName });
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- s3rver has no type declarations
  require('s3rver/lib/models/account').DUMMY_ACCOUNT.createKeyPair(creds.accessKeyId, creds.secretAccessKey);
  const env = {
    PATH: process.env.PATH ?? '', TMPDIR: process.env.TMPDIR ?? '/tmp',
    IMAGING_NATS_URL: nats.url, IMAGING_MONGODB_URI: mongo.uri, IMAGING_MONGODB_DB: dbName,
    IMAGING_S3_ENDPOINT: s3.endpoint, IMAGING_S3_ACCESS_KEY_ID: s3.accessKeyId, IMAGING_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    IMAGING_IMAGE_BUCKET: 'imaging-images', IMAGING_UPLOAD_POLL_MS: '200', IMAGING_SWEEP_INTERVAL_MS: '200',
    IMAGING_LOG_LEVEL: 'warn', IMAGING_ADMIN_PORT: '0',
  };
  await Promise.all(
    STAGES.map((stage) =>
      startProcess([join(DIST, 'functions/host/main.js')], { ...env, IMAGING_STAGE: stage, IMAGING_HOST_MODE: 'jetstream', IMAGING_CONCURRENCY: '1' }, /consuming /),
    ),
  );
  const ec2 = await startProcess([join(DIST, 'cli/main.js'), 'gateway'], {
    ...env, IMAGING_PORT: '0', IMAGING_ACCESS_KEY_ID: creds.accessKeyId, IMAGING_SECRET_ACCESS_KEY: creds.secretAccessKey, IMAGING_ACCOUNT_ID: '123456789012',
  }, /EC2 endpoint:\s+(\S+)/);
  endpoints = { ec2, s3: s3.endpoint, creds };
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
  await tasks?.close();
  await Promise.all([nats?.stop(), mongo?.stop(), s3?.stop()]);
});

test('ten imports waiting for their upload do not delay an uploaded one on a single manifest replica', async () => {
  const ec2 = sdkClient(endpoints.ec2, creds);
  const disk = makeRawDisk(tempDir('waiting-uploads-'));
  const importUploaded = async (prefix: string): Promise<number> => {
    const up = await upload(endpoints, disk.path, 'uploaded-bucket', { prefix });
    const started = Date.now();
    const out = await ec2.send(new ImportVolumeCommand({ Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB }, AvailabilityZone: 'z' }));
    const done = await waitForTask(endpoints, out.ConversionTask!.ConversionTaskId!, 120_000);
    expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
    expect(done.ImportVolume.Image.Checksum).toBe(fileSha256(disk.path));
    return Date.now() - started;
  };

  const alone = await importUploaded('alone/');

  const waiting: string[] = [];
  for (let i = 0; i < 10; i++) {
    const out = await ec2.send(new ImportVolumeCommand({
      Image: { Format: 'RAW', Bytes: 2 ** 20, ImportManifestUrl: new URL(`/nowhere/never-${i}.xml`, s3.endpoint).href },
      Volume: { Size: 1 },
      AvailabilityZone: 'z',
    }));
    waiting.push(out.ConversionTask!.ConversionTaskId!);
  }
  // The single manifest replica has taken the waiting imports in before the uploaded one comes.
  await new Promise((r) => setTimeout(r, 1500));
  const behindWaiting = await importUploaded('behind/');
  console.log(`uploaded import alone: ${alone} ms; behind ten waiting imports: ${behindWaiting} ms`);
  expect(behindWaiting).toBeLessThan(2 * alone + 5000);

  for (const id of waiting) expect((await tasks.get(id))?.state).toBe('pending-upload');
  ec2.destroy();
});
