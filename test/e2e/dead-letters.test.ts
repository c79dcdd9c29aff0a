/**
 * A poison event end to end with real processes: `imaging serve` on a real nats-server with the
 * convert stage made to throw on every delivery (IMAGING_TEST_FAIL_STAGE, test only). The event
 * ends in the dead-letter stream, its task failed naming the stage; after a restart without the
 * fault, `imaging events replay --all` completes the task and empties the stream.
 */
import { execFile } from 'child_process';
import { join } from 'path';
import { promisify } from 'util';
import { boto3Call } from '../helpers/ec2-clients';
import { makeRawDisk, tempDir } from '../helpers/disk-corpus';
import { startNatsServer, type RunningNatsServer } from '../helpers/nats-server';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { startServeProcess, type RunningServe } from '../helpers/serve-process';
import { upload, waitForTask, type Endpoints } from './import-driver';

jest.setTimeout(240_000);

const CLI = join(__dirname, '../../dist/cli/main.js');
const creds = { accessKeyId: 'AKIADEADLETTERS01', secretAccessKey: 'dead-letter-secret-key-0123456789', region: 'us-east-1' };
const run = promisify(execFile);

let nats: RunningNatsServer;
let s3: RunningS3Server;
let dir: string;
let serve: RunningServe | undefined;

beforeAll(async () => {
  [nats, s3] = await Promise.all([startNatsServer(), startS3Server()]);
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- s3rver has no type declarations
  require('s3rver/lib/models/account').DUMMY_ACCOUNT.createKeyPair(creds.accessKeyId, creds.secretAccessKey);
  dir = tempDir('dead-letters-');
});

afterAll(async () => {
  await stopServe();
  await Promise.all([nats?.stop(), s3?.stop()]);
});

async function startServe(extraEnv: Record<string, string> = {}): Promise<string> {
  const args = ['--data-dir', join(dir, 'data'), '--port', '0', '--admin-port', '0', '--nats-url', nats.url, '--upload-poll-ms', '200', '--log-level', 'warn'];
  args.push('--s3-endpoint', s3.endpoint, '--s3-access-key-id', s3.accessKeyId, '--s3-secret-access-key', s3.secretAccessKey);
  const env = { PATH: process.env.PATH ?? '', TMPDIR: process.env.TMPDIR ?? '/tmp', IMAGING_ACCESS_KEY_ID: creds.accessKeyId, IMAGING_SECRET_ACCESS_KEY: creds.secretAccessKey, IMAGING_ACCOUNT_ID: '123456789012', IMAGING_MAX_DELIVER: '5', ...extraEnv };
  serve = await startServeProcess(args, { env });
  return serve.ec2;
}

async function stopServe(): Promise<void> {
  const running = serve;
  serve = undefined;
  await running?.stop('SIGTERM', 20_000);
}

async function cli(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [CLI, ...args, '--nats-url', nats.url, '--mongodb-uri', `sqlite:${join(dir, 'data', 'tasks.db')}`], { timeout: 60_000 });
  return stdout;
}

test('a stage that always throws: dead letter, failed task naming the stage, then replay completes it', async () => {
  let endpoints: Endpoints = { ec2: await startServe({ IMAGING_TEST_FAIL_STAGE: 'convert' }), s3: s3.endpoint, creds };
  const disk = makeRawDisk(dir);
  const up = await upload(endpoints, disk.path, 'poison-bucket');
  const out = await boto3Call(endpoints.ec2, creds, 'ImportVolume', {
    Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl },
    Volume: { Size: up.volumeSizeGiB },
    AvailabilityZone: 'z',
  });
  const taskId: string = out.ConversionTask.ConversionTaskId;

  // Five deliveries with back-off (1+2+4+8 s), then the give-up.
  const failed = await waitForTask(endpoints, taskId, 120_000);
  expect(failed.State).toBe('cancelled');
  expect(failed.StatusMessage).toMatch(/^ServerError: the convert stage gave up: injected fault/);

  const letters = JSON.parse(await cli(['events', 'list-dead', '--json']));
  expect(letters).toEqual([
    expect.objectContaining({ stage: 'convert', taskId, type: 'io.imaging.bundle-decrypted', reason: expect.stringContaining('injected fault') }),
  ]);

  // The fault is fixed: restart without it, replay, and the task completes.
  await stopServe();
  endpoints = { ...endpoints, ec2: await startServe() };
  const replayed = await cli(['events', 'replay', '--all']);
  expect(replayed).toMatch(new RegExp(`replayed ${letters[0].id} \\(convert, task ${taskId}\\) as event `));
  expect(replayed).not.toContain(letters[0].eventId);
  const done = await waitForTask(endpoints, taskId, 120_000);
  expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
  expect(JSON.parse(await cli(['events', 'list-dead', '--json']))).toEqual([]);

  // Nothing left to retry: a completed task is refused with a message.
  await expect(cli(['tasks', 'retry', taskId])).rejects.toThrow(/is completed, not failed/);
});
