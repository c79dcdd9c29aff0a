/**
 * The admin port of every process type: /healthz, /readyz and /metrics answer on `imaging serve`
 * (in-process), a stage host and `imaging gateway` (both spawned from dist/); a stage host turns
 * not-ready when its nats-server stops and ready again when it is back on the same port; after an
 * import through `imaging serve` the metrics count it.
 */
import { symlinkSync, writeFileSync } from 'fs';
import { join } from 'path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { ImportVolumeCommand } from '@aws-sdk/client-ec2';
import { makeRawDisk, tempDir } from '../helpers/disk-corpus';
import { startNatsServer, type RunningNatsServer } from '../helpers/nats-server';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { sdkClient } from '../helpers/ec2-clients';
import { spawnChild, type RunningChild } from '../helpers/child-process';
import { DIST } from '../helpers/dist';
import { waitUntil } from '../helpers/wait-until';
import { startTestService, upload, waitForTask } from '../e2e/import-driver';

jest.setTimeout(120_000);

async function get(url: string, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(new URL(path, url), { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, text: await res.text() };
}

/** The value of one series in Prometheus text, or undefined when absent. */
function sample(metrics: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    const body = line.slice(name.length + 1, line.indexOf('}'));
    if (Object.entries(labels).every(([k, v]) => body.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

async function expectAdminAnswers(url: string, ready = true): Promise<string> {
  expect(await get(url, '/healthz')).toEqual({ status: 200, text: expect.stringContaining('alive') });
  const readyz = await get(url, '/readyz');
  expect([readyz.status, readyz.text]).toEqual([ready ? 200 : 503, expect.any(String)]);
  const metrics = await get(url, '/metrics');
  expect(metrics.status).toBe(200);
  expect(metrics.text).toContain('process_cpu_user_seconds_total');
  expect(metrics.text).toContain('# TYPE imaging_events_handled_total counter');
  return metrics.text;
}

describe('imaging serve (in-process)', () => {
  test('answers on the admin port and counts an import', async () => {
    const dir = tempDir('admin-serve-');
    const { service, endpoints } = await startTestService(dir);
    try {
      await expectAdminAnswers(service.adminEndpoint);
      const ready = JSON.parse((await get(service.adminEndpoint, '/readyz')).text);
      // serve runs the boot-check stage too, so it reports that stage's tool as a capability.
      expect(ready.checks.map((c: { name: string }) => c.name).sort()).toEqual(['dynamic-validation', 'object-storage', 'task-store']);
      expect(ready.checks.find((c: { name: string }) => c.name === 'dynamic-validation')).toMatchObject({ capability: true, ready: true });

      const disk = makeRawDisk(dir);
      const up = await upload(endpoints, disk.path, 'admin-bucket');
      const out = await sdkClient(endpoints.ec2, endpoints.creds).send(
        new ImportVolumeCommand({ Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB }, AvailabilityZone: 'local-1a' }),
      );
      const done = await waitForTask(endpoints, out.ConversionTask!.ConversionTaskId!);
      expect(done.State).toBe('completed');

      const metrics = (await get(service.adminEndpoint, '/metrics')).text;
      for (const stage of ['manifest', 'decrypt', 'convert', 'validate', 'boot-check', 'register']) {
        expect([stage, sample(metrics, 'imaging_events_handled_total', { stage })]).toEqual([stage, expect.any(Number)]);
        expect(sample(metrics, 'imaging_events_handled_total', { stage })).toBeGreaterThanOrEqual(1);
        expect(sample(metrics, 'imaging_stage_duration_seconds_count', { stage, outcome: 'handled' })).toBeGreaterThanOrEqual(1);
        expect(sample(metrics, 'imaging_stage_in_flight', { stage })).toBe(0);
      }
      expect(sample(metrics, 'imaging_http_requests_total', { action: 'ImportVolume', code: '200' })).toBe(1);
      expect(sample(metrics, 'imaging_http_request_duration_seconds_count', { action: 'ImportVolume' })).toBe(1);
      expect(sample(metrics, 'imaging_tasks', { state: 'completed' })).toBe(1);
      expect(sample(metrics, 'imaging_bytes_written_total', { stage: 'convert' })).toBe(disk.size);
      // A RAW source over HTTP cannot tell its holes: every byte is read once, plus the format
      // sniffing's reads of the head and the tail (under 1 MiB).
      const read = sample(metrics, 'imaging_bytes_read_total', { stage: 'convert' })!;
      expect(read).toBeGreaterThanOrEqual(disk.size);
      expect(read).toBeLessThan(disk.size + 1024 * 1024);
      expect(sample(metrics, 'imaging_conversion_throughput_bytes_per_second_sum', { format: 'raw' })).toBeGreaterThan(0);
      expect(sample(metrics, 'imaging_conversion_throughput_bytes_per_second_count', { format: 'raw' })).toBe(1);
      expect(sample(metrics, 'imaging_task_state_changes_total', { to: 'completed' })).toBe(1);
      expect(sample(metrics, 'imaging_task_state_changes_total', { to: 'pending-upload' })).toBe(1);
    } finally {
      await service.stop();
    }
  });
});

describe('processes spawned from dist/', () => {
  let nats: RunningNatsServer;
  let s3: RunningS3Server;
  const children: RunningChild[] = [];
  let dir: string;

  beforeAll(async () => {
    [nats, s3] = await Promise.all([startNatsServer(), startS3Server()]);
    await s3.s3.send(new CreateBucketCommand({ Bucket: 'imaging-images' }));
    dir = tempDir('admin-procs-');
  });

  afterAll(async () => {
    await Promise.all(children.map((child) => child.stop('SIGKILL')));
    await Promise.all([nats?.stop(), s3?.stop()]);
  });

  /** Starts a process of dist/; its admin URL once it has printed it. */
  async function start(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
    const child = spawnChild(process.execPath, args, { env: { PATH: process.env.PATH ?? '', ...env } });
    children.push(child);
    return (await child.waitForOutput(/admin (?:on|endpoint:) (http:\/\/\S+\/)/, 60_000))[1];
  }

  const common = () => ({
    IMAGING_NATS_URL: nats.url,
    IMAGING_MONGODB_URI: `sqlite:${join(dir, 'tasks.db')}`,
    IMAGING_S3_ENDPOINT: s3.endpoint,
    IMAGING_S3_ACCESS_KEY_ID: s3.accessKeyId,
    IMAGING_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    IMAGING_ADMIN_PORT: '0',
    IMAGING_LOG_LEVEL: 'warn',
  });

  test('imaging gateway answers on its admin port', async () => {
    const url = await start([join(DIST, 'cli/main.js'), 'gateway'], {
      ...common(),
      IMAGING_PORT: '0',
      IMAGING_ACCESS_KEY_ID: 'AKIAADMINTEST0001',
      IMAGING_SECRET_ACCESS_KEY: 'admin-test-secret',
      IMAGING_ACCOUNT_ID: '123456789012',
    });
    await expectAdminAnswers(url);
    const checks = JSON.parse((await get(url, '/readyz')).text).checks.map((c: { name: string }) => c.name);
    expect(checks.sort()).toEqual(['nats', 'task-store']);
  });

  test('a stage whose tool is missing is not ready for that capability only', async () => {
    // A PATH with node but without qemu-system-x86_64.
    const bare = tempDir('admin-bare-path-');
    symlinkSync(process.execPath, join(bare, 'node'));
    const without = await start([join(DIST, 'functions/host/main.js')], { ...common(), IMAGING_STAGE: 'boot-check', PATH: bare });
    const whole = await get(without, '/readyz');
    expect(whole.status).toBe(200);
    const capability = JSON.parse(whole.text).checks.find((c: { name: string }) => c.name === 'dynamic-validation');
    expect(capability).toEqual({ name: 'dynamic-validation', ready: false, capability: true, error: 'qemu-system-x86_64 is not installed (not on PATH): this stage cannot do dynamic-validation' });
    const only = await get(without, '/readyz/dynamic-validation');
    expect(only.status).toBe(503);

    // With an executable of that name on PATH the capability is ready (the check looks for the
    // tool, it does not run it; test-setup need not install qemu-system for this).
    const withTool = tempDir('admin-qemu-path-');
    writeFileSync(join(withTool, 'qemu-system-x86_64'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const ready = await start([join(DIST, 'functions/host/main.js')], { ...common(), IMAGING_STAGE: 'boot-check', PATH: `${bare}:${withTool}` });
    expect((await get(ready, '/readyz/dynamic-validation')).status).toBe(200);
  });

  test('a stage host answers, and /readyz follows its NATS connection', async () => {
    const url = await start([join(DIST, 'functions/host/main.js')], { ...common(), IMAGING_STAGE: 'convert' });
    await expectAdminAnswers(url);
    const checks = JSON.parse((await get(url, '/readyz')).text).checks.map((c: { name: string }) => c.name);
    expect(checks.sort()).toEqual(['nats', 'object-storage', 'task-store']);

    const port = Number(new URL(nats.url).port);
    await nats.stop();
    let down = { status: 0, text: '' };
    await waitUntil(async () => (down = await get(url, '/readyz').catch(() => down)).status === 503, { what: '/readyz to say 503', timeoutMs: 30_000, everyMs: 200 });
    const nat = JSON.parse(down.text).checks.find((c: { name: string }) => c.name === 'nats');
    expect(nat.ready).toBe(false);
    expect((await get(url, '/healthz')).status).toBe(200);

    nats = await startNatsServer({ port });
    await waitUntil(async () => (await get(url, '/readyz').catch(() => undefined))?.status === 200, { what: '/readyz to say 200 again', timeoutMs: 60_000, everyMs: 200 });
  });
});
