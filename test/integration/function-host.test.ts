/**
 * The function host runs one Stage three ways. A small stage defined here (advance the task,
 * emit the next event, or fail on purpose) is run on the in-process bus, on JetStream (real
 * nats-server) and as an HTTP CloudEvent function, against a real SQLite task store.
 */
import { existsSync, mkdtempSync, rmSync } from 'fs';
import { createServer, type IncomingMessage } from 'http';
import type { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { CloudEvent, HTTP } from 'cloudevents';
import type { EventBus, Subscription } from '../../events/bus';
import { InProcessBus } from '../../events/in-process-bus';
import { JetStreamBus } from '../../events/jetstream-bus';
import { makeEvent } from '../../events/make-event';
import { parseEventData } from '../../events/schema';
import { STREAM_NAME } from '../../events/subjects';
import { EVENT_TYPES } from '../../events/types';
import { ClientError } from '../../functions/errors';
import type { StageDeps } from '../../functions/host/deps';
import { ConfigError, stageConfigFromEnv } from '../../functions/host/env-config';
import { giveUpStatusMessage } from '../../functions/host/give-up';
import { cloudEventFunction, startHttpStage } from '../../functions/host/http-function';
import { runStageOnBus } from '../../functions/host/stage-runner';
import type { Stage, StageContext } from '../../functions/stage';
import { advanceTask } from '../../tasks/state-machine';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument, TaskState } from '../../tasks/task';
import { startNatsServer, type RunningNatsServer } from '../helpers/nats-server';
import { spawnChild } from '../helpers/child-process';
import { waitUntil } from '../helpers/wait-until';
import { makeS3Client } from '../../toolkit/io/object-storage';
import { connect } from 'nats';

const ACCOUNT = '123456789012';

/** The test stage: advances manifest-received → bundle-decrypted; task ids pick a failure. */
const seen: { taskId: string; attempt: number; ctx: StageContext }[] = [];
const testStage: Stage = {
  name: 'decrypt',
  consumes: EVENT_TYPES.manifestReceived,
  async handle(event, ctx) {
    const { taskId, accountId } = parseEventData(event, EVENT_TYPES.manifestReceived);
    seen.push({ taskId, attempt: ctx.delivery.attempt, ctx });
    if (taskId.includes('-broken')) throw new Error('object storage unavailable');
    if (taskId.includes('-client')) throw new ClientError('the manifest names a part that does not exist');
    if (taskId.includes('-flaky') && ctx.delivery.attempt === 1) throw new Error('transient');
    const moved = await advanceTask(ctx.tasks, taskId, ['manifest-received'], 'bundle-decrypted');
    if (moved) await ctx.publish(makeEvent(EVENT_TYPES.bundleDecrypted, { taskId, accountId }, 'decrypt') as CloudEvent<unknown>);
  },
};

function taskDoc(id: string, state: TaskState = 'manifest-received'): TaskDocument {
  const now = new Date().toISOString();
  return {
    id,
    kind: 'import-volume',
    accountId: ACCOUNT,
    state,
    statusMessage: '',
    progress: 0,
    bytesConverted: 0,
    request: { format: 'RAW', bytes: 1024, manifestUrl: 'http://127.0.0.1:1/manifest.xml', volumeSizeGiB: 1 },
    artifacts: {},
    history: [{ at: now, from: null, to: state }],
    createdAt: now,
    updatedAt: now,
    expiresAt: new Date(Date.now() + 86_400_000).toISOString(),
    version: 1,
  };
}

const silentLog = { info: () => undefined, warn: () => undefined, error: () => undefined };

function makeDeps(): StageDeps {
  const config = stageConfigFromEnv({
    IMAGING_MONGODB_URI: 'sqlite::memory:',
    IMAGING_S3_ENDPOINT: 'http://127.0.0.1:9',
    IMAGING_S3_ACCESS_KEY_ID: 'k',
    IMAGING_S3_SECRET_ACCESS_KEY: 's',
  });
  return { tasks: SqliteTaskStore.open(':memory:'), s3: makeS3Client(config.storage), config, log: { ...silentLog } };
}

async function stateOf(deps: StageDeps, id: string): Promise<TaskState | undefined> {
  return (await deps.tasks.get(id))?.state;
}

beforeEach(() => {
  seen.length = 0;
});

let nats: RunningNatsServer;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  await nats?.stop();
});

async function freshJetStreamBus(): Promise<EventBus> {
  const admin = await connect({ servers: nats.url });
  await (await admin.jetstreamManager()).streams.delete(STREAM_NAME).catch(() => undefined);
  await admin.close();
  return JetStreamBus.connect({ servers: nats.url, retryDelayMs: () => 100, pullExpiresMs: 1000, log: silentLog });
}

const buses: { name: string; make: () => Promise<EventBus> }[] = [
  { name: 'in-process bus', make: async () => new InProcessBus({ retryDelayMs: () => 50 }) },
  { name: 'JetStream bus', make: freshJetStreamBus },
];

describe.each(buses)('runStageOnBus on the $name', ({ make }) => {
  let bus: EventBus;
  let deps: StageDeps;
  let running: Subscription | undefined;
  const emitted: CloudEvent<unknown>[] = [];

  beforeEach(async () => {
    bus = await make();
    deps = makeDeps();
    emitted.length = 0;
    await bus.subscribe({ durable: 'watcher', types: [EVENT_TYPES.bundleDecrypted] }, async (event) => {
      emitted.push(event);
    });
  });

  afterEach(async () => {
    await running?.stop();
    running = undefined;
    await bus.close();
    await deps.tasks.close();
  });

  test('runs the stage on its event with a full context, advancing the task and emitting the next event', async () => {
    await deps.tasks.create(taskDoc('import-vol-00000001'));
    running = await runStageOnBus(testStage, deps, bus);
    await bus.publish(makeEvent(EVENT_TYPES.manifestReceived, { taskId: 'import-vol-00000001', accountId: ACCOUNT }, 'manifest') as CloudEvent<unknown>);

    await waitUntil(() => emitted.length === 1, { what: 'the next event', timeoutMs: 10_000, everyMs: 25 });
    expect(await stateOf(deps, 'import-vol-00000001')).toBe('bundle-decrypted');
    expect(emitted[0].type).toBe(EVENT_TYPES.bundleDecrypted);
    expect(emitted[0].data).toEqual({ taskId: 'import-vol-00000001', accountId: ACCOUNT });
    const { ctx, attempt } = seen[0];
    expect(attempt).toBe(1);
    expect(ctx.tasks).toBe(deps.tasks);
    expect(ctx.s3).toBe(deps.s3);
    expect(ctx.config).toBe(deps.config);
    // The stage's logger writes through the host's, with the task's and the event's ids on every line.
    const lines: object[] = [];
    deps.log.info = (obj) => void lines.push(obj as object);
    ctx.log.info({ step: 'x' }, 'a line');
    expect(lines).toEqual([{ stage: testStage.name, eventId: expect.any(String), taskId: 'import-vol-00000001', accountId: ACCOUNT, step: 'x' }]);
    expect(typeof ctx.delivery.working).toBe('function');
  });

  test('a failing delivery is retried and the retry succeeds', async () => {
    await deps.tasks.create(taskDoc('import-vol-flaky001'));
    running = await runStageOnBus(testStage, deps, bus, { maxDeliver: 3 });
    await bus.publish(makeEvent(EVENT_TYPES.manifestReceived, { taskId: 'import-vol-flaky001', accountId: ACCOUNT }, 'manifest') as CloudEvent<unknown>);
    await waitUntil(async () => (await stateOf(deps, 'import-vol-flaky001')) === 'bundle-decrypted', { what: 'task advance', timeoutMs: 10_000, everyMs: 25 });
    expect(seen.map((s) => s.attempt)).toEqual([1, 2]);
  });

  test('after maxDeliver failures the task is failed with a ServerError status message', async () => {
    await deps.tasks.create(taskDoc('import-vol-broken01'));
    running = await runStageOnBus(testStage, deps, bus, { maxDeliver: 2 });
    await bus.publish(makeEvent(EVENT_TYPES.manifestReceived, { taskId: 'import-vol-broken01', accountId: ACCOUNT }, 'manifest') as CloudEvent<unknown>);
    await waitUntil(async () => (await stateOf(deps, 'import-vol-broken01')) === 'failed', { what: 'task failure', timeoutMs: 10_000, everyMs: 25 });
    const task = (await deps.tasks.get('import-vol-broken01'))!;
    expect(task.statusMessage).toBe(`ServerError: the ${testStage.name} stage gave up: object storage unavailable`);
    expect(seen.map((s) => s.attempt)).toEqual([1, 2]);
    expect(emitted).toHaveLength(0);
  });

  test('a client error that outlives the retries reads ClientError; a task that already ended is left alone', async () => {
    await deps.tasks.create(taskDoc('import-vol-client01'));
    await deps.tasks.create(taskDoc('import-vol-broken02', 'cancelled'));
    running = await runStageOnBus(testStage, deps, bus, { maxDeliver: 1 });
    await bus.publish(makeEvent(EVENT_TYPES.manifestReceived, { taskId: 'import-vol-client01', accountId: ACCOUNT }, 'manifest') as CloudEvent<unknown>);
    await bus.publish(makeEvent(EVENT_TYPES.manifestReceived, { taskId: 'import-vol-broken02', accountId: ACCOUNT }, 'manifest') as CloudEvent<unknown>);
    await waitUntil(async () => (await stateOf(deps, 'import-vol-client01')) === 'failed', { what: 'task failure', timeoutMs: 10_000, everyMs: 25 });
    expect((await deps.tasks.get('import-vol-client01'))!.statusMessage).toBe('ClientError: the manifest names a part that does not exist');
    await waitUntil(() => seen.some((s) => s.taskId === 'import-vol-broken02'), { what: 'second delivery', timeoutMs: 10_000, everyMs: 25 });
    await new Promise((r) => setTimeout(r, 300));
    const untouched = (await deps.tasks.get('import-vol-broken02'))!;
    expect(untouched.state).toBe('cancelled');
    expect(untouched.version).toBe(1);
  });
});

describe('giveUpStatusMessage', () => {
  test('names the side at fault', () => {
    expect(giveUpStatusMessage(new ClientError('bad image'))).toBe('ClientError: bad image');
    expect(giveUpStatusMessage(new Error('disk full'))).toBe('ServerError: disk full');
    expect(giveUpStatusMessage('weird')).toBe('ServerError: weird');
  });
});

describe('the stage as an HTTP CloudEvent function', () => {
  let deps: StageDeps;
  beforeEach(() => {
    deps = makeDeps();
  });
  afterEach(async () => {
    await deps.tasks.close();
  });

  async function post(url: string, event: CloudEvent<unknown>, mode: 'binary' | 'structured' = 'binary') {
    const message = mode === 'binary' ? HTTP.binary(event) : HTTP.structured(event);
    return fetch(url, { method: 'POST', headers: message.headers as Record<string, string>, body: message.body as string });
  }

  test('a binary-mode POST runs the stage and answers 2xx; the next event goes to the given publisher', async () => {
    await deps.tasks.create(taskDoc('import-vol-00000002'));
    const published: CloudEvent<unknown>[] = [];
    const server = await startHttpStage(testStage, deps, 0, async (event) => void published.push(event), '127.0.0.1');
    try {
      const sent = makeEvent(EVENT_TYPES.manifestReceived, { taskId: 'import-vol-00000002', accountId: ACCOUNT }, 'manifest') as CloudEvent<unknown>;
      const response = await post(server.url, sent);
      expect(response.status).toBeGreaterThanOrEqual(200);
      expect(response.status).toBeLessThan(300);
      expect(await stateOf(deps, 'import-vol-00000002')).toBe('bundle-decrypted');
      expect(published.map((e) => e.type)).toEqual([EVENT_TYPES.bundleDecrypted]);
      expect(seen[0].attempt).toBe(1);
    } finally {
      await server.close();
    }
  });

  test('a structured-mode POST works too', async () => {
    await deps.tasks.create(taskDoc('import-vol-00000003'));
    const published: CloudEvent<unknown>[] = [];
    const server = await startHttpStage(testStage, deps, 0, async (event) => void published.push(event), '127.0.0.1');
    try {
      const sent = makeEvent(EVENT_TYPES.manifestReceived, { taskId: 'import-vol-00000003', accountId: ACCOUNT }, 'manifest') as CloudEvent<unknown>;
      const response = await post(server.url, sent, 'structured');
      expect(response.ok).toBe(true);
      expect(published).toHaveLength(1);
    } finally {
      await server.close();
    }
  });

  test('a stage error answers 5xx so the sender retries', async () => {
    await deps.tasks.create(taskDoc('import-vol-broken03'));
    const server = await startHttpStage(testStage, deps, 0, async () => undefined, '127.0.0.1');
    const consoleError = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const sent = makeEvent(EVENT_TYPES.manifestReceived, { taskId: 'import-vol-broken03', accountId: ACCOUNT }, 'manifest') as CloudEvent<unknown>;
      const response = await post(server.url, sent);
      expect(response.status).toBeGreaterThanOrEqual(500);
      expect(await stateOf(deps, 'import-vol-broken03')).toBe('manifest-received');
    } finally {
      consoleError.mockRestore();
      await server.close();
    }
  });

  test('a request that is not a CloudEvent is logged and acknowledged, never handed to the stage', async () => {
    const errors: unknown[] = [];
    deps.log = { ...silentLog, error: (obj: unknown) => void errors.push(obj) };
    const server = await startHttpStage(testStage, deps, 0, async () => undefined, '127.0.0.1');
    try {
      const response = await fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"hello":"world"}' });
      expect(response.ok).toBe(true);
      expect(seen).toHaveLength(0);
      expect(errors).toHaveLength(1);
    } finally {
      await server.close();
    }
  });

  test('with K_SINK set and no publisher, the next event is POSTed to the sink in binary mode', async () => {
    await deps.tasks.create(taskDoc('import-vol-00000004'));
    const received: { headers: IncomingMessage['headers']; body: string }[] = [];
    const sink = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.writeHead(202).end();
      });
    });
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
    const previous = process.env.K_SINK;
    process.env.K_SINK = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/`;
    try {
      const handler = cloudEventFunction(testStage, deps);
      const sent = makeEvent(EVENT_TYPES.manifestReceived, { taskId: 'import-vol-00000004', accountId: ACCOUNT }, 'manifest');
      await handler(sent);
      expect(received).toHaveLength(1);
      expect(received[0].headers['ce-type']).toBe(EVENT_TYPES.bundleDecrypted);
      expect(received[0].headers['ce-specversion']).toBe('1.0');
      expect(JSON.parse(received[0].body)).toEqual({ taskId: 'import-vol-00000004', accountId: ACCOUNT });
    } finally {
      if (previous === undefined) delete process.env.K_SINK;
      else process.env.K_SINK = previous;
      await new Promise((resolve) => sink.close(resolve));
    }
  });

  test('a sink that refuses the next event makes the invocation fail (so it is retried)', async () => {
    await deps.tasks.create(taskDoc('import-vol-00000005'));
    const sink = createServer((_req, res) => res.writeHead(503).end());
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
    const previous = process.env.K_SINK;
    process.env.K_SINK = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/`;
    try {
      const handler = cloudEventFunction(testStage, deps);
      const sent = makeEvent(EVENT_TYPES.manifestReceived, { taskId: 'import-vol-00000005', accountId: ACCOUNT }, 'manifest');
      await expect(handler(sent)).rejects.toThrow(/answered 503/);
    } finally {
      if (previous === undefined) delete process.env.K_SINK;
      else process.env.K_SINK = previous;
      await new Promise((resolve) => sink.close(resolve));
    }
  });
});

describe('configuration from the environment', () => {
  const minimal = {
    IMAGING_MONGODB_URI: 'mongodb://db:27017',
    IMAGING_S3_ENDPOINT: 'http://s3.internal:9000',
    IMAGING_S3_ACCESS_KEY_ID: 'AKIA',
    IMAGING_S3_SECRET_ACCESS_KEY: 'secret',
  };

  test('fills in the documented defaults', () => {
    expect(stageConfigFromEnv(minimal)).toEqual({
      storage: {
        endpoint: 'http://s3.internal:9000', region: 'us-east-1', accessKeyId: 'AKIA', secretAccessKey: 'secret', forcePathStyle: true,
        connectionTimeoutMs: 5000, requestTimeoutMs: 60_000, maxAttempts: 5,
      },
      imageBucket: 'imaging-images',
      allowedObjectHosts: ['s3.internal:9000'],
      uploadPollMs: 5000,
      memoryLimitBytes: 256 * 1024 * 1024,
      // 16 TiB, EC2's largest volume; eight reads in flight.
      maxImageBytes: 16 * 1024 ** 4,
      readsInFlight: 8,
      leaseMs: 60_000,
      // 1024 GiB per account (IMAGING_ACCOUNT_STORAGE_QUOTA_GIB).
      accountStorageQuotaBytes: 1024 * 1024 ** 3,
      // The validate and boot-check stages' defaults (IMAGING_GUEST_*, IMAGING_BOOT_CHECK*).
      guestPolicy: { allowedFamilies: ['linux', 'windows'], refuseEncrypted: true, refuseMultiBoot: true, requireBootloader: true },
      bootCheck: { mode: 'on-request', accelerator: 'auto', memoryMiB: 512, timeoutMs: 300_000 },
      phaseDeadlineMs: 600_000,
    });
  });

  test('reads every setting', () => {
    const config = stageConfigFromEnv({
      ...minimal,
      IMAGING_S3_REGION: 'eu-west-1',
      IMAGING_S3_FORCE_PATH_STYLE: 'false',
      IMAGING_IMAGE_BUCKET: 'images',
      IMAGING_ALLOWED_OBJECT_HOSTS: 'a.example:9000, B.example',
      IMAGING_UPLOAD_POLL_MS: '250',
      IMAGING_MEMORY_LIMIT_MB: '1024',
      IMAGING_LEASE_MS: '15000',
      IMAGING_S3_TIMEOUT_MS: '2500',
      IMAGING_S3_MAX_ATTEMPTS: '9',
    });
    expect(config.storage.requestTimeoutMs).toBe(2500);
    expect(config.storage.maxAttempts).toBe(9);
    expect(config.storage.region).toBe('eu-west-1');
    expect(config.leaseMs).toBe(15_000);
    expect(config.storage.forcePathStyle).toBe(false);
    expect(config.imageBucket).toBe('images');
    expect(config.allowedObjectHosts).toEqual(['a.example:9000', 'b.example']);
    expect(config.uploadPollMs).toBe(250);
    expect(config.memoryLimitBytes).toBe(1024 * 1024 * 1024);
  });

  test.each(Object.keys(minimal))('a missing %s is named in a one-line error', (name) => {
    const env: Record<string, string> = { ...minimal };
    delete env[name];
    expect(() => stageConfigFromEnv(env)).toThrow(new ConfigError(`${name} is not set`));
  });

  test('malformed numbers and flags are refused by name', () => {
    expect(() => stageConfigFromEnv({ ...minimal, IMAGING_UPLOAD_POLL_MS: 'soon' })).toThrow(/IMAGING_UPLOAD_POLL_MS must be a positive integer/);
    expect(() => stageConfigFromEnv({ ...minimal, IMAGING_MEMORY_LIMIT_MB: '-5' })).toThrow(/IMAGING_MEMORY_LIMIT_MB/);
    expect(() => stageConfigFromEnv({ ...minimal, IMAGING_S3_FORCE_PATH_STYLE: 'maybe' })).toThrow(/IMAGING_S3_FORCE_PATH_STYLE/);
    expect(() => stageConfigFromEnv({ ...minimal, IMAGING_S3_ENDPOINT: 'not a url' })).toThrow(/IMAGING_S3_ENDPOINT is not a URL/);
  });
});

describe('the stage process (dist/functions/host/main.js)', () => {
  const main = join(__dirname, '../../dist/functions/host/main.js');

  const run = (env: Record<string, string>) => spawnChild(process.execPath, [main], { env: { PATH: process.env.PATH ?? '', ...env }, keep: 'stderr' });

  test('exits 1 with a one-line error naming a missing setting', async () => {
    expect(existsSync(main)).toBe(true);
    const proc = run({ IMAGING_STAGE: 'decrypt' });
    expect(await proc.exited).toBe(1);
    expect(proc.output().trim()).toBe('imaging stage: IMAGING_MONGODB_URI is not set');
  });

  test('consumes from JetStream and exits 0 on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'imaging-host-'));
    try {
      const proc = run({
        IMAGING_STAGE: 'decrypt',
        IMAGING_NATS_URL: nats.url,
        IMAGING_MONGODB_URI: `sqlite:${join(dir, 'tasks.db')}`,
        IMAGING_S3_ENDPOINT: 'http://127.0.0.1:9',
        IMAGING_S3_ACCESS_KEY_ID: 'k',
        IMAGING_S3_SECRET_ACCESS_KEY: 's',
        IMAGING_ADMIN_PORT: '0',
      });
      await proc.waitForOutput(/consuming io.imaging.manifest-received/, 20_000);
      expect(proc.output()).toMatch(/stage decrypt consuming io.imaging.manifest-received/);
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
