/**
 * One read must never open an unbounded number of requests: a source of thousands of tiny parts
 * once took every file descriptor of the service (issue 11). These run the bounds over a real
 * HTTP server that counts the requests it is answering at once.
 */
import { execFile } from 'child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'http';
import type { AddressInfo } from 'net';
import { join } from 'path';
import { promisify } from 'util';
import { ConcatenatedSource } from '../../../toolkit/io/concat-source';
import { HttpRangeSource } from '../../../toolkit/io/http-range-source';
import { LocalResourceError, localResourceError } from '../../../toolkit/io/range-errors';
import { RangeGetClient } from '../../../toolkit/io/range-get-client';
import { ConcurrencyLimit } from '../../../toolkit/map-limit';
import { seededBytes } from '../../helpers/disk-corpus';

const PARTS = 2000;
const PART_BYTES = 3;
const whole = seededBytes(PARTS * PART_BYTES, 5);

interface CountingServer {
  url(part: number): string;
  mostAtOnce: number;
  requests: number;
  stop(): Promise<void>;
}

/** Serves part i of `whole` at /part/i with Range support, a few ms late, counting requests in flight. */
async function countingServer(): Promise<CountingServer> {
  let inFlight = 0;
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    state.requests++;
    state.mostAtOnce = Math.max(state.mostAtOnce, ++inFlight);
    response.on('close', () => inFlight--);
    const part = Number(/^\/part\/(\d+)$/.exec(request.url ?? '')?.[1]);
    const data = whole.subarray(part * PART_BYTES, (part + 1) * PART_BYTES);
    const [, first, last] = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '')!.map(Number);
    setTimeout(() => {
      response
        .writeHead(206, { 'Content-Range': `bytes ${first}-${last}/${data.length}`, 'Content-Length': last + 1 - first })
        .end(data.subarray(first, last + 1));
    }, 2);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const state: CountingServer = {
    url: (part) => `http://127.0.0.1:${port}/part/${part}`,
    mostAtOnce: 0,
    requests: 0,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  return state;
}

function tinyPartsSource(server: CountingServer, client: RangeGetClient, partReadsAtOnce?: number): ConcatenatedSource {
  const parts = Array.from({ length: PARTS }, (_, i) => new HttpRangeSource(server.url(i), PART_BYTES, `part ${i}`, { client }));
  return new ConcatenatedSource(parts, 'tiny parts', { partReadsAtOnce });
}

describe('bounds on requests in flight', () => {
  let server: CountingServer;
  const clients: RangeGetClient[] = [];
  beforeEach(async () => {
    server = await countingServer();
  });
  afterEach(async () => {
    clients.splice(0).forEach((client) => client.close());
    await server.stop();
  });
  const clientWith = (connectionsPerOrigin: number) => {
    const client = new RangeGetClient({ connectionsPerOrigin, timeoutMs: 30_000 });
    clients.push(client);
    return client;
  };

  it(`a read over ${PARTS} tiny parts has at most partReadsAtOnce part reads in flight`, async () => {
    const source = tinyPartsSource(server, clientWith(1000), 8);
    const target = Buffer.alloc(whole.length);
    await source.readInto(0, target);
    expect(target.equals(whole)).toBe(true);
    expect(server.requests).toBe(PARTS);
    expect(server.mostAtOnce).toBe(8);
  });

  it('several reads at once share the bound', async () => {
    const source = tinyPartsSource(server, clientWith(1000), 5);
    const half = whole.length / 2;
    const [a, b] = await Promise.all([source.read(0, half), source.read(half, half)]);
    expect(Buffer.concat([a, b]).equals(whole)).toBe(true);
    expect(server.mostAtOnce).toBe(5);
  });

  it('the client never has more requests in flight to one origin than its connection cap', async () => {
    const source = tinyPartsSource(server, clientWith(4), 1000);
    const target = Buffer.alloc(whole.length);
    await source.readInto(0, target);
    expect(target.equals(whole)).toBe(true);
    expect(server.mostAtOnce).toBe(4);
  });
});

describe('ConcurrencyLimit', () => {
  it('runs at most `limit` calls at once, in arrival order, and frees a slot on failure', async () => {
    const limit = new ConcurrencyLimit(3);
    const started: number[] = [];
    let most = 0;
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        limit.run(async () => {
          started.push(i);
          most = Math.max(most, limit.active);
          await new Promise((resolve) => setTimeout(resolve, 1 + (i % 3)));
          if (i % 7 === 0) throw new Error(`call ${i}`);
          return i;
        }),
      ),
    );
    expect(most).toBe(3);
    expect(started).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(3);
    expect(limit.active).toBe(0);
  });
});

describe('running out of file descriptors', () => {
  it('is a LocalResourceError: not transient, and says so in one line', () => {
    const error = localResourceError(Object.assign(new Error('connect EMFILE'), { code: 'EMFILE' }), 'cannot connect to 10.0.0.1:80');
    expect(error).toBeInstanceOf(LocalResourceError);
    expect(error).toMatchObject({ transient: false, local: true, code: 'EMFILE' });
    expect(error!.message).toBe('cannot connect to 10.0.0.1:80: this process has no file descriptors left (EMFILE)');
    expect(localResourceError(Object.assign(new Error('reset'), { code: 'ECONNRESET' }), 'x')).toBeUndefined();
  });

  it('a process out of descriptors fails its reads with EMFILE at once instead of retrying them', async () => {
    // A real EMFILE: the compiled client (global setup builds dist/) in a process allowed 40 descriptors.
    const client = join(__dirname, '../../../dist/toolkit/io/range-get-client.js');
    const source = join(__dirname, '../../../dist/toolkit/io/http-range-source.js');
    const script = `
      const { RangeGetClient } = require(${JSON.stringify(client)});
      const { HttpRangeSource } = require(${JSON.stringify(source)});
      const client = new RangeGetClient({ connectionsPerOrigin: 500 });
      const reads = Array.from({ length: 200 }, (_, i) =>
        new HttpRangeSource(process.argv[1] + i, 3, 'part ' + i, { client, baseDelayMs: 2000 }).read(0, 3));
      const started = Date.now();
      Promise.allSettled(reads).then((results) => {
        const failed = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
        const emfile = failed.find((e) => e.code === 'EMFILE');
        console.log(JSON.stringify({ failed: failed.length, name: emfile && emfile.name, transient: emfile && emfile.transient, message: emfile && emfile.message, ms: Date.now() - started }));
        process.exit(0);
      });`;
    const { stdout } = await promisify(execFile)('/bin/sh', ['-c', 'ulimit -n 40 && exec "$0" -e "$1" "$2"', process.execPath, script, server.url(0).replace(/0$/, '')], {
      timeout: 60_000,
    });
    const outcome = JSON.parse(stdout.trim());
    expect(outcome.failed).toBeGreaterThan(0);
    expect(outcome).toMatchObject({ name: 'LocalResourceError', transient: false });
    expect(outcome.message).toMatch(/^fetching bytes 0-2 of part \d+: cannot connect to 127\.0\.0\.1:\d+: this process has no file descriptors left \(EMFILE\)$/);
    // Not retried: four attempts with a 2 s base delay would take over 10 s.
    expect(outcome.ms).toBeLessThan(5000);
  });
  let server: CountingServer;
  beforeAll(async () => {
    server = await countingServer();
  });
  afterAll(() => server.stop());
});
