/** The admin port over real HTTP: liveness, readiness with required and capability checks, Prometheus text. */
import { createServiceMetrics } from '../../../ops/metrics';
import { startAdminServer, type RunningAdminServer } from '../../../ops/admin-server';

let server: RunningAdminServer;
let natsUp = true;
const metrics = createServiceMetrics({ process: 'test', taskStateCounts: async () => ({ completed: 3, 'pending-upload': 1 }) });

beforeAll(async () => {
  server = await startAdminServer(0, '127.0.0.1', {
    registry: metrics.registry,
    checkTimeoutMs: 300,
    checks: [
      { name: 'nats', check: async () => { if (!natsUp) throw new Error('connection refused'); } },
      { name: 'task-store', check: async () => undefined },
      { name: 'dynamic-validation', capability: true, check: async () => { throw new Error('qemu-system-x86_64 not found'); } },
    ],
  });
});
afterAll(() => server.close());

const get = async (path: string) => {
  const res = await fetch(new URL(path, server.url));
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
};

test('/healthz answers while the process lives', async () => {
  expect(await get('/healthz')).toMatchObject({ status: 200 });
});

test('/readyz is ready when required checks pass, naming a failed capability without failing', async () => {
  natsUp = true;
  const res = await get('/readyz');
  expect(res.status).toBe(200);
  const body = JSON.parse(res.text);
  expect(body.checks).toContainEqual({ name: 'dynamic-validation', ready: false, capability: true, error: 'qemu-system-x86_64 not found' });
  expect((await get('/readyz/dynamic-validation')).status).toBe(503);
  expect((await get('/readyz/nats')).status).toBe(200);
  expect((await get('/readyz/nope')).status).toBe(404);
});

test('/readyz turns 503 when a required dependency fails, and back when it returns', async () => {
  natsUp = false;
  const down = await get('/readyz');
  expect(down.status).toBe(503);
  expect(JSON.parse(down.text).checks).toContainEqual({ name: 'nats', ready: false, capability: false, error: 'connection refused' });
  natsUp = true;
  expect((await get('/readyz')).status).toBe(200);
});

test('a check that never answers is not ready within its time limit', async () => {
  const hanging = await startAdminServer(0, '127.0.0.1', {
    registry: metrics.registry,
    checkTimeoutMs: 200,
    checks: [{ name: 's3', check: () => new Promise(() => undefined) }],
  });
  try {
    const started = Date.now();
    const res = await fetch(new URL('/readyz', hanging.url));
    expect(res.status).toBe(503);
    expect(JSON.parse(await res.text()).checks[0].error).toBe('no answer within 200 ms');
    expect(Date.now() - started).toBeLessThan(2000);
  } finally {
    await hanging.close();
  }
});

test('/metrics serves Prometheus text with the values the process recorded', async () => {
  metrics.eventsHandled.inc({ stage: 'convert' }, 2);
  metrics.httpRequests.inc({ action: 'ImportVolume', code: '200' });
  const res = await get('/metrics');
  expect(res.status).toBe(200);
  expect(res.type).toMatch(/^text\/plain/);
  expect(res.text).toMatch(/^imaging_events_handled_total\{stage="convert",process="test"\} 2$/m);
  expect(res.text).toMatch(/^imaging_http_requests_total\{action="ImportVolume",code="200",process="test"\} 1$/m);
  expect(res.text).toMatch(/^imaging_tasks\{state="completed",process="test"\} 3$/m);
  expect(res.text).toMatch(/^process_resident_memory_bytes\{process="test"\} \d+/m);
});
