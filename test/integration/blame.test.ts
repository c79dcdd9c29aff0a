/**
 * Who is blamed for a refused or redirected object URL (issue #10 item 6), with a real S3 server
 * (s3rver), a real HTTP server answering like a bucket in another region, and the manifest stage
 * run through the stage host's invokeStage (the path every bus delivery takes):
 * - the service's own setting refusing its own object storage is a ServerError: the delivery
 *   fails (so the bus retries), an error-level line is logged, the task is not failed, and only
 *   giving up fails it, with "ServerError: the manifest stage gave up: ...";
 * - the user's own URL on a foreign host, and the user's bucket answering a redirect, are
 *   ClientErrors that fail the task at once.
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { createServer, type Server } from 'http';
import type { AddressInfo } from 'net';
import { Writable } from 'stream';
import pino from 'pino';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument } from '../../tasks/task';
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { manifestStage } from '../../functions/manifest/manifest-stage';
import { invokeStage } from '../../functions/host/invoke-stage';
import { failTaskOfAbandonedEvent } from '../../functions/host/give-up';
import type { StageDeps } from '../../functions/host/deps';
import { ServerError } from '../../functions/errors';
import { buildImportManifest } from '../../toolkit/bundle/import-manifest';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { testStageConfig } from '../helpers/stage-config';
import { putWithUrl } from '../e2e/import-driver';

let s3: RunningS3Server;
let tasks: SqliteTaskStore;
let redirecting: Server;
let redirectHost: string;
const ACCOUNT = '111122223333';

/** Log lines written by the stage host, parsed. */
function capturingLog(lines: { level: number; msg: string }[]): pino.Logger {
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return pino({ level: 'info' }, sink);
}

function deps(allowedObjectHosts: string[], log: pino.Logger): StageDeps {
  return { tasks, s3: s3.s3, config: testStageConfig(s3, 'blame-images', { allowedObjectHosts }), log };
}

async function pendingTask(id: string, manifestUrl: string): Promise<TaskDocument> {
  const now = new Date().toISOString();
  const doc: TaskDocument = {
    id, kind: 'import-volume', accountId: ACCOUNT, state: 'pending-upload', statusMessage: 'Pending import-image upload', progress: 0, bytesConverted: 0,
    request: { format: 'RAW', bytes: 2 ** 20, manifestUrl, volumeSizeGiB: 1 },
    artifacts: {}, history: [{ at: now, from: null, to: 'pending-upload' }], createdAt: now, updatedAt: now,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(), version: 0,
  };
  await tasks.create(doc);
  return doc;
}

/** A manifest of one 1 MiB part whose URLs are `partUrl`, uploaded to s3rver; its presigned URL. */
async function manifestListing(name: string, partUrl: string): Promise<string> {
  const xml = buildImportManifest({
    version: '2010-11-15', fileFormat: 'RAW', size: 2 ** 20, volumeSizeGiB: 1,
    parts: [{ index: 0, start: 0, end: 2 ** 20 - 1, key: `${name}/part.0`, headUrl: partUrl, getUrl: partUrl }],
  });
  return putWithUrl(s3.s3, 'user-bucket', `${name}/manifest.xml`, xml);
}

const importRequested = (taskId: string) => makeEvent(EVENT_TYPES.importRequested, { taskId, accountId: ACCOUNT }, 'test');
const delivery = { attempt: 1, working: () => undefined };
const publish = async () => undefined;

beforeAll(async () => {
  s3 = await startS3Server();
  await s3.s3.send(new CreateBucketCommand({ Bucket: 'user-bucket' }));
  tasks = SqliteTaskStore.open(':memory:');
  // Answers every request as S3 answers for a bucket that lives behind another endpoint.
  redirecting = createServer((req, res) => {
    res.writeHead(301, { location: 'https://user-bucket.s3.eu-west-3.example/part.0', 'content-type': 'application/xml' });
    res.end('<Error><Code>PermanentRedirect</Code></Error>');
  });
  await new Promise<void>((resolve) => redirecting.listen(0, '127.0.0.1', resolve));
  redirectHost = `127.0.0.1:${(redirecting.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await tasks.close();
  await s3.stop();
  await new Promise((resolve) => redirecting.close(resolve));
});

test("the stage's own setting refusing the service's object storage is a ServerError: retried, logged as an error, never the user's ClientError", async () => {
  const manifestUrl = await manifestListing('misconfigured', `${s3.endpoint}/user-bucket/misconfigured/part.0`);
  const task = await pendingTask('import-vol-b1a3e001', manifestUrl);
  const lines: { level: number; msg: string }[] = [];
  // The operator set the stage's allowed hosts to something that leaves out the S3 endpoint.
  const misconfigured = deps(['objects.elsewhere.example:9000'], capturingLog(lines));

  const outcome = await invokeStage(manifestStage, misconfigured, publish, importRequested(task.id), delivery).then(() => undefined, (error: unknown) => error);
  expect(outcome).toBeInstanceOf(ServerError);
  expect(String((outcome as Error).message)).toMatch(/IMAGING_ALLOWED_OBJECT_HOSTS/);
  // Not failed: the bus will offer the event again, and a fixed setting lets it through.
  expect((await tasks.get(task.id))!.state).toBe('pending-upload');
  const errors = lines.filter((l) => l.level >= 50);
  expect(errors).toHaveLength(1);
  expect(errors[0].msg).toMatch(/fault of the service/);

  // Out of attempts, the task is failed as the service's fault, naming the stage.
  await failTaskOfAbandonedEvent(manifestStage, misconfigured, importRequested(task.id), outcome);
  const failed = await tasks.get(task.id);
  expect(failed!.state).toBe('failed');
  expect(failed!.statusMessage).toMatch(/^ServerError: the manifest stage gave up: the import manifest URL is on 127\.0\.0\.1:\d+, the service's own object storage/);
});

test("a part URL on a host of the user's choosing is the user's ClientError, the task fails at once", async () => {
  const manifestUrl = await manifestListing('foreign', 'http://169.254.169.254/latest/meta-data/');
  const task = await pendingTask('import-vol-b1a3e002', manifestUrl);
  const lines: { level: number; msg: string }[] = [];
  await invokeStage(manifestStage, deps([new URL(s3.endpoint).host], capturingLog(lines)), publish, importRequested(task.id), delivery);
  const failed = await tasks.get(task.id);
  expect(failed!.state).toBe('failed');
  expect(failed!.statusMessage).toMatch(/^ClientError: the part 0 head URL is refused: host 169\.254\.169\.254 is not an object-storage endpoint/);
  expect(lines.filter((l) => l.level >= 50)).toEqual([]);
});

test("the user's bucket answering a redirect is the user's ClientError, not a wait until expiry", async () => {
  const manifestUrl = await manifestListing('redirected', `http://${redirectHost}/user-bucket/redirected/part.0`);
  const task = await pendingTask('import-vol-b1a3e003', manifestUrl);
  const lines: { level: number; msg: string }[] = [];
  await invokeStage(manifestStage, deps([new URL(s3.endpoint).host, redirectHost], capturingLog(lines)), publish, importRequested(task.id), delivery);
  const failed = await tasks.get(task.id);
  expect(failed!.state).toBe('failed');
  expect(failed!.statusMessage).toMatch(/^ClientError: the object \/user-bucket\/redirected\/part\.0 on 127\.0\.0\.1:\d+ answered HTTP 301, a redirect to https:\/\/user-bucket\.s3\.eu-west-3\.example\/part\.0/);
}, 20_000);
