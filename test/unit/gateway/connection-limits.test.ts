/**
 * Issue 11, item 4: thousands of idle, unauthenticated connections must not make the EC2 endpoint
 * unresponsive. A signed DescribeConversionTasks answers within 1 s while the flood stays open.
 */
import { request as httpRequest } from 'http';
import { connect, type Socket } from 'net';
import { createGateway, StaticAccountDirectory } from '../../../gateway';
import { connectionLimitsFromEnv, DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from '../../../gateway/connection-limits';
import type { RawRequest } from '../../../gateway/query-request';
import { SqliteTaskStore } from '../../../tasks/sqlite-store';
import { signWithSmithy } from './signed-requests';

const SECRET = 'limits-test-secret';
const ACCOUNT = { accountId: '333333333333', accessKeyId: 'AKIDTEST', secretAccessKey: SECRET };

async function startGateway(limits: Partial<ConnectionLimits>) {
  const tasks = SqliteTaskStore.open(':memory:');
  const gateway = createGateway({
    tasks, publish: async () => undefined, accounts: new StaticAccountDirectory([ACCOUNT]), region: 'eu-west-1', allowedObjectHosts: [],
    connectionLimits: limits,
  });
  const listening = await gateway.listen(0);
  const url = new URL(listening.url);
  return { port: Number(url.port), close: async () => (await listening.close(), await tasks.close()) };
}

function send(port: number, raw: RawRequest): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method: raw.method, path: raw.path, agent: false, headers: { ...raw.headers, 'content-length': raw.body.length } as any },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      },
    );
    req.on('error', reject);
    req.end(raw.body);
  });
}

/** Opens `count` connections that send nothing (every fourth sends half a request line). */
async function idleFlood(port: number, count: number): Promise<{ sockets: Socket[]; closed: () => number }> {
  const sockets: Socket[] = [];
  let closed = 0;
  const batch = 200;
  for (let i = 0; i < count; i += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, count - i) }, (_, j) =>
        new Promise<void>((resolve) => {
          const socket = connect(port, '127.0.0.1');
          socket.on('error', () => undefined);
          socket.on('close', () => void closed++);
          socket.once('connect', () => {
            if ((i + j) % 4 === 0) socket.write('POST / HTTP/1.1\r\nHost: x\r\n');
            resolve();
          });
          socket.once('close', () => resolve());
          sockets.push(socket);
        }),
      ),
    );
  }
  return { sockets, closed: () => closed };
}

async function timedDescribe(port: number): Promise<{ status: number; body: string; ms: number }> {
  const raw = await signWithSmithy({ body: 'Action=DescribeConversionTasks&Version=2016-11-15' }, SECRET, { accessKeyId: ACCOUNT.accessKeyId });
  const started = Date.now();
  const res = await send(port, raw);
  return { ...res, ms: Date.now() - started };
}

const waitFor = async (check: () => boolean, ms: number) => {
  const deadline = Date.now() + ms;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
};

test('with caps lowered to 40 (20 per address), 600 idle connections: a signed request answers within 1 s; the server holds at most the cap', async () => {
  const gateway = await startGateway({ maxConnections: 40, maxConnectionsPerAddress: 20 });
  const flood = await idleFlood(gateway.port, 600);
  try {
    // Everything beyond the per-address cap was closed by the server, oldest idle first.
    await waitFor(() => flood.closed() >= 580, 10_000);
    expect(flood.closed()).toBeGreaterThanOrEqual(580);
    const res = await timedDescribe(gateway.port);
    expect(res.status).toBe(200);
    expect(res.body).toContain('<DescribeConversionTasksResponse');
    expect(res.ms).toBeLessThan(1000);
  } finally {
    flood.sockets.forEach((s) => s.destroy());
    await gateway.close();
  }
}, 30_000);

test('with the default caps, 2,000 idle connections (within this machine\'s descriptor limit): a signed request answers within 1 s', async () => {
  const gateway = await startGateway({});
  const flood = await idleFlood(gateway.port, 2000);
  try {
    await waitFor(() => flood.closed() >= 2000 - DEFAULT_CONNECTION_LIMITS.maxConnectionsPerAddress, 10_000);
    expect(flood.closed()).toBeGreaterThanOrEqual(2000 - DEFAULT_CONNECTION_LIMITS.maxConnectionsPerAddress);
    const res = await timedDescribe(gateway.port);
    expect([res.status, res.ms < 1000]).toEqual([200, true]);
  } finally {
    flood.sockets.forEach((s) => s.destroy());
    await gateway.close();
  }
}, 30_000);

test('an idle connection is closed after the idle timeout', async () => {
  const gateway = await startGateway({ idleTimeoutMs: 300, maxConnections: 5, maxConnectionsPerAddress: 5 });
  const flood = await idleFlood(gateway.port, 3);
  try {
    await waitFor(() => flood.closed() === 3, 3000);
    expect(flood.closed()).toBe(3);
    const res = await timedDescribe(gateway.port);
    expect(res.status).toBe(200);
  } finally {
    flood.sockets.forEach((s) => s.destroy());
    await gateway.close();
  }
});

test('limits from the settings schema; a nonsense value is refused by name', () => {
  expect(connectionLimitsFromEnv('ec2', { IMAGING_EC2_MAX_CONNECTIONS: '10', IMAGING_EC2_REQUEST_TIMEOUT_MS: '0' })).toEqual({
    ...DEFAULT_CONNECTION_LIMITS, maxConnections: 10, requestTimeoutMs: 0,
  });
  // The embedded S3 takes long uploads: no whole-request deadline by default.
  expect(connectionLimitsFromEnv('s3', {})).toEqual({ ...DEFAULT_CONNECTION_LIMITS, requestTimeoutMs: 0 });
  expect(connectionLimitsFromEnv('s3', { IMAGING_S3_MAX_CONNECTIONS_PER_ADDRESS: '7' }).maxConnectionsPerAddress).toBe(7);
  expect(() => connectionLimitsFromEnv('ec2', { IMAGING_EC2_MAX_CONNECTIONS: '0' })).toThrow('IMAGING_EC2_MAX_CONNECTIONS must be a positive integer (connections), got "0"');
  expect(() => connectionLimitsFromEnv('ec2', { IMAGING_EC2_IDLE_TIMEOUT_MS: 'soon' })).toThrow('IMAGING_EC2_IDLE_TIMEOUT_MS must be a positive integer (milliseconds), got "soon"');
  expect(() => connectionLimitsFromEnv('s3', { IMAGING_S3_REQUEST_TIMEOUT_MS: '-1' })).toThrow('IMAGING_S3_REQUEST_TIMEOUT_MS must be a whole number, 0 or more (milliseconds), got "-1"');
});
