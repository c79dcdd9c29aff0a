import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, CreateBucketCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { execFile, execFileSync } from 'child_process';
import { promisify } from 'util';
import { readFileSync } from 'fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'http';
import { createServer as createHttpsServer } from 'https';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'net';
import { join } from 'path';
import {
  BrokenResponseError,
  HttpStatusError,
  RangeGetClient,
  RangeMismatchError,
  type RangeGetClientOptions,
} from '../../../toolkit/io/range-get-client';
import { seededBytes, tempDir } from '../../helpers/disk-corpus';
import { startS3Server, type RunningS3Server } from '../../helpers/s3-server';

const whole = seededBytes(3 * 1024 * 1024 + 4321, 7);

/** Answers a Range request with the slice of `data` it names, as S3 would (206, Content-Range, ETag). */
function serveRanges(data: Buffer) {
  return (request: IncomingMessage, response: ServerResponse): void => {
    const match = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '');
    if (!match) {
      response.writeHead(200, { 'Content-Length': data.length }).end(data);
      return;
    }
    const first = Number(match[1]);
    const last = Math.min(Number(match[2]), data.length - 1);
    response
      .writeHead(206, { 'Content-Range': `bytes ${first}-${last}/${data.length}`, 'Content-Length': last + 1 - first, ETag: '"seeded"' })
      .end(data.subarray(first, last + 1));
  };
}

interface Running {
  url(path?: string): URL;
  /** TCP connections the server has accepted. */
  connections: number;
  /** Server-side sockets, to watch them close. */
  sockets: Set<Socket>;
  stop(): Promise<void>;
}

/** Starts an http(s) or raw TCP server on a free port and counts its connections. */
async function listen(server: Server | NetServer, scheme = 'http'): Promise<Running> {
  const running: Running = {
    url: (path = '/object') => new URL(`${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}${path}`),
    connections: 0,
    sockets: new Set(),
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of running.sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  server.on(scheme === 'https' ? 'secureConnection' : 'connection', (socket: Socket) => {
    running.connections++;
    running.sockets.add(socket);
    socket.on('close', () => running.sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return running;
}

async function httpServer(handler: (request: IncomingMessage, response: ServerResponse) => void): Promise<Running> {
  return listen(createServer(handler));
}

/**
 * A TCP server that speaks just enough HTTP to misbehave precisely: `onRequest` gets each
 * request head with its connection's number and the request's number on that connection.
 */
async function rawServer(onRequest: (socket: Socket, head: string, connection: number, request: number) => void): Promise<Running> {
  let connections = 0;
  const server = createNetServer((socket) => {
    const connection = ++connections;
    let requests = 0;
    let pending = '';
    socket.on('error', () => {});
    socket.on('data', (data) => {
      pending += data.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        onRequest(socket, head, connection, ++requests);
      }
    });
  });
  return listen(server);
}

function rangeOf(head: string): [number, number] {
  const [, first, last] = /\r\nRange: bytes=(\d+)-(\d+)/.exec(head)!;
  return [Number(first), Number(last)];
}

function partial(first: number, last: number, data = whole): Buffer {
  const head = `HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${first}-${last}/${data.length}\r\nContent-Length: ${last + 1 - first}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), data.subarray(first, last + 1)]);
}

async function expectRange(client: RangeGetClient, url: URL, offset: number, length: number, data = whole): Promise<void> {
  const target = Buffer.alloc(length, 0xee);
  const info = await client.getRangeInto(url, offset, target);
  expect(info.totalSize).toBe(data.length);
  expect(target.equals(data.subarray(offset, offset + length))).toBe(true);
}

function clientFor(options: RangeGetClientOptions = {}): RangeGetClient {
  const client = new RangeGetClient({ timeoutMs: 5000, ...options });
  clients.push(client);
  return client;
}
const clients: RangeGetClient[] = [];
afterEach(() => clients.splice(0).forEach((client) => client.close()));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The compiled client (global setup builds dist/), for a test that runs it in a process of its own. */
const COMPILED_CLIENT = join(__dirname, '../../../dist/toolkit/io/range-get-client.js');
const execFileAsync = promisify(execFile);

describe('RangeGetClient against a well-behaved server', () => {
  let server: Running;
  const seen: { url?: string; ifMatch?: string | string[] } = {};
  beforeAll(async () => {
    const serve = serveRanges(whole);
    server = await httpServer((request, response) => {
      seen.url = request.url;
      seen.ifMatch = request.headers['if-match'];
      serve(request, response);
    });
  });
  afterAll(() => server.stop());

  it('copies exact ranges into the target over one kept-alive connection', async () => {
    const client = clientFor();
    const url = server.url();
    await expectRange(client, url, 0, 1);
    await expectRange(client, url, whole.length - 1, 1);
    await expectRange(client, url, 12345, 678901);
    await expectRange(client, url, 0, whole.length);
    for (let i = 0; i < 40; i++) await expectRange(client, url, (i * 77_777) % (whole.length - 5000), 1 + ((i * 331) % 5000));
    expect(server.connections).toBe(1);
    const target = Buffer.alloc(10);
    expect(await client.getRangeInto(url, 5, target)).toEqual({ etag: '"seeded"', totalSize: whole.length });
  });

  it('sends the path and query byte for byte, and the caller headers', async () => {
    const client = clientFor();
    // As a presigned URL has them: percent-escapes that re-encoding or decoding would change.
    const path = '/b/dir/a%20b%2Bc~d.bin?X-Amz-Credential=A%2F20260101%2Fus-east-1&X-Amz-SignedHeaders=host&x=%3D%26';
    await client.getRangeInto(server.url(path), 0, Buffer.alloc(4), { 'If-Match': '"seeded"' });
    expect(seen.url).toBe(path);
    expect(seen.ifMatch).toBe('"seeded"');
  });

  it('opens a socket per concurrent request and keeps at most maxIdlePerOrigin of them', async () => {
    const client = clientFor({ maxIdlePerOrigin: 2 });
    const before = server.connections;
    const batch = () => Promise.all(Array.from({ length: 6 }, (_, i) => expectRange(client, server.url(), i * 100_000, 100_000)));
    await batch();
    expect(server.connections - before).toBe(6);
    await batch(); // two reuse the idle sockets, four connect
    expect(server.connections - before).toBe(10);
  });

  it('opens at most connectionsPerOrigin sockets to an origin, and never has more requests in flight there', async () => {
    let inFlight = 0;
    let most = 0;
    const serve = serveRanges(whole);
    const slowServer = await httpServer((request, response) => {
      most = Math.max(most, ++inFlight);
      response.on('finish', () => inFlight--);
      setTimeout(() => serve(request, response), 5);
    });
    try {
      const client = clientFor({ connectionsPerOrigin: 3 });
      await Promise.all(Array.from({ length: 60 }, (_, i) => expectRange(client, slowServer.url(), i * 1000, 1000)));
      expect(most).toBe(3);
      expect(slowServer.connections).toBe(3);
    } finally {
      await slowServer.stop();
    }
  });

  it('idle sockets do not hold a process open', async () => {
    // A process that reads once and has nothing left to do must exit while its kept-alive
    // socket is still open on the server's side (which would keep it for a minute).
    const idleServer = await listen(Object.assign(createServer(serveRanges(whole)), { keepAliveTimeout: 60_000 }));
    try {
      const script = `const { RangeGetClient } = require(${JSON.stringify(COMPILED_CLIENT)});
        new RangeGetClient().getRangeInto(new URL(${JSON.stringify(idleServer.url().href)}), 0, Buffer.alloc(100)).then(() => console.log('read'));`;
      // Killed (and failing) after 30 s if the socket kept it alive.
      const { stdout } = await execFileAsync(process.execPath, ['-e', script], { timeout: 30_000 });
      expect(stdout.trim()).toBe('read');
      expect(idleServer.connections).toBe(1);
    } finally {
      await idleServer.stop();
    }
  });

  it('close() destroys idle sockets; the next request connects again', async () => {
    const client = clientFor();
    const before = server.connections;
    await expectRange(client, server.url(), 0, 100);
    expect(server.connections).toBe(before + 1);
    const [serverSide] = [...server.sockets].slice(-1);
    const closed = new Promise((resolve) => serverSide.once('close', resolve));
    client.close();
    await closed;
    await expectRange(client, server.url(), 10, 10);
    expect(server.connections).toBe(before + 2);
  });

  it('refuses what it cannot send', async () => {
    const client = clientFor();
    await expect(client.getRangeInto(new URL('ftp://127.0.0.1/x'), 0, Buffer.alloc(1))).rejects.toThrow(TypeError);
    await expect(client.getRangeInto(server.url(), 0, Buffer.alloc(0))).rejects.toThrow(RangeError);
    await expect(client.getRangeInto(server.url(), -1, Buffer.alloc(1))).rejects.toThrow(RangeError);
    await expect(client.getRangeInto(server.url(), 0, Buffer.alloc(1), { Range: 'bytes=0-' })).rejects.toThrow(/cannot be sent/);
    await expect(client.getRangeInto(server.url(), 0, Buffer.alloc(1), { 'X-A': 'a\r\nX-B: b' })).rejects.toThrow(/line break/);
  });

  it('copies 64 MiB in 4 MiB ranges byte for byte', async () => {
    const big = seededBytes(64 * 1024 * 1024, 99);
    const bigServer = await httpServer(serveRanges(big));
    try {
      const client = clientFor();
      const copy = Buffer.alloc(big.length);
      const range = 4 * 1024 * 1024;
      const offsets = Array.from({ length: big.length / range }, (_, i) => i * range);
      // Four at a time, each into its own part of one buffer.
      for (let i = 0; i < offsets.length; i += 4) {
        await Promise.all(offsets.slice(i, i + 4).map((offset) => client.getRangeInto(bigServer.url(), offset, copy.subarray(offset, offset + range))));
      }
      expect(copy.equals(big)).toBe(true);
      expect(bigServer.connections).toBe(4);
    } finally {
      await bigServer.stop();
    }
  });
});

describe('RangeGetClient against misbehaving servers', () => {
  it('refuses a server that ignores Range', async () => {
    const server = await httpServer((_, response) => void response.writeHead(200, { 'Content-Length': whole.length }).end(whole));
    try {
      const error = await clientFor().getRangeInto(server.url(), 0, Buffer.alloc(10)).catch((e) => e);
      expect(error).toBeInstanceOf(HttpStatusError);
      expect(error).toMatchObject({ status: 200, transient: false });
      expect(error.message).toMatch(/ignored the Range request/);
    } finally {
      await server.stop();
    }
  });

  it('refuses a Content-Range other than the one asked for, naming both', async () => {
    const server = await httpServer((_, response) =>
      void response.writeHead(206, { 'Content-Range': `bytes 0-9/${whole.length}`, 'Content-Length': 10 }).end(whole.subarray(0, 10)),
    );
    try {
      const error = await clientFor().getRangeInto(server.url(), 100, Buffer.alloc(10)).catch((e) => e);
      expect(error).toBeInstanceOf(RangeMismatchError);
      expect(error.transient).toBe(false);
      expect(error.message).toBe(`asked for bytes 100-109, the server answered 206 with Content-Range "bytes 0-9/${whole.length}"`);
    } finally {
      await server.stop();
    }
  });

  it('reports a body cut short as a BrokenResponseError and carries on', async () => {
    let cut = true;
    const serve = serveRanges(whole);
    const server = await httpServer((request, response) => {
      if (!cut) return serve(request, response);
      response.writeHead(206, { 'Content-Range': `bytes 0-1048575/${whole.length}`, 'Content-Length': 1048576 });
      response.write(whole.subarray(0, 300_000), () => response.destroy());
    });
    try {
      const client = clientFor();
      const error = await client.getRangeInto(server.url(), 0, Buffer.alloc(1048576)).catch((e) => e);
      expect(error).toBeInstanceOf(BrokenResponseError);
      expect(error.transient).toBe(true);
      expect(error.message).toMatch(/broke off after \d+ of 1048576 body bytes/);
      cut = false;
      await expectRange(client, server.url(), 0, 1048576);
    } finally {
      await server.stop();
    }
  });

  it('decodes an S3 XML error body: 503 SlowDown is transient', async () => {
    const xml = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>';
    const server = await httpServer((_, response) => void response.writeHead(503, { 'Content-Type': 'application/xml', 'Content-Length': xml.length }).end(xml));
    try {
      const client = clientFor();
      for (let i = 0; i < 2; i++) {
        const error = await client.getRangeInto(server.url(), 0, Buffer.alloc(10)).catch((e) => e);
        expect(error).toBeInstanceOf(HttpStatusError);
        expect(error).toMatchObject({ status: 503, code: 'SlowDown', transient: true, message: 'HTTP 503 SlowDown: Please reduce your request rate.' });
      }
      expect(server.connections).toBe(2); // a socket that answered an error is not kept
    } finally {
      await server.stop();
    }
  });

  it('decodes a chunked 404 NoSuchKey as soon as its last chunk arrives', async () => {
    const server = await httpServer((_, response) => {
      response.writeHead(404, { 'Content-Type': 'application/xml' }); // no Content-Length: chunked
      response.write('<Error><Code>NoSu');
      setTimeout(() => response.end('chKey</Code><Message>The specified key &amp; nothing else does not exist.</Message></Error>'), 20);
    });
    try {
      const started = Date.now();
      const error = await clientFor({ timeoutMs: 20_000 }).getRangeInto(server.url(), 0, Buffer.alloc(10)).catch((e) => e);
      expect(error).toBeInstanceOf(HttpStatusError);
      expect(error).toMatchObject({ status: 404, code: 'NoSuchKey', transient: false });
      expect(error.message).toBe('HTTP 404 NoSuchKey: The specified key & nothing else does not exist.');
      expect(Date.now() - started).toBeLessThan(10_000); // not waiting for the (kept-alive) socket to time out
    } finally {
      await server.stop();
    }
  });

  it('still succeeds against a server that closes every connection after its response', async () => {
    const serve = serveRanges(whole);
    const server = await httpServer((request, response) => {
      response.on('finish', () => request.socket.destroy());
      serve(request, response);
    });
    try {
      const client = clientFor();
      // Each request starts as soon as the previous resolves, usually before the close is seen.
      for (let i = 0; i < 20; i++) await expectRange(client, server.url(), i * 1000, 1000);
      expect(server.connections).toBe(20);
    } finally {
      await server.stop();
    }
  });

  it('sends a request again on a fresh socket when a reused one was closed before answering', async () => {
    let requests = 0;
    // Every second request on a connection finds it reset, as if it had sat idle too long.
    const server = await rawServer((socket, head, _, request) => {
      requests++;
      if (request > 1) return void socket.resetAndDestroy();
      const [first, last] = rangeOf(head);
      socket.write(partial(first, last));
    });
    try {
      const client = clientFor();
      for (let i = 0; i < 5; i++) await expectRange(client, server.url(), i * 10, 10);
      expect(server.connections).toBe(5);
      expect(requests).toBe(9);
    } finally {
      await server.stop();
    }
  });

  it('does not send again when a fresh socket is closed', async () => {
    const server = await rawServer((socket) => void socket.destroy());
    try {
      const error = await clientFor().getRangeInto(server.url(), 0, Buffer.alloc(10)).catch((e) => e);
      expect(error).toBeInstanceOf(BrokenResponseError);
      expect(error.message).toMatch(/no response from 127\.0\.0\.1:\d+/);
      expect(server.connections).toBe(1);
    } finally {
      await server.stop();
    }
  });

  it('times out a server that never answers', async () => {
    const server = await rawServer(() => {});
    try {
      const started = Date.now();
      const error = await clientFor({ timeoutMs: 200 }).getRangeInto(server.url(), 0, Buffer.alloc(10)).catch((e) => e);
      expect(error).toBeInstanceOf(BrokenResponseError);
      expect(error).toMatchObject({ code: 'ETIMEDOUT', transient: true });
      expect(error.message).toMatch(/no response from .*: no data for 200 ms/);
      expect(Date.now() - started).toBeLessThan(10_000); // the 200 ms timeout, not the 120 s default
    } finally {
      await server.stop();
    }
  });

  it('reads a head and body that arrive in pieces, after a 100 Continue', async () => {
    const server = await rawServer(async (socket, head) => {
      const [first, last] = rangeOf(head);
      const whole206 = partial(first, last).toString('latin1').replace('\r\n\r\n', '\r\nETag: "pieces"\r\nConnection: keep-alive\r\n\r\n');
      const response = Buffer.from(`HTTP/1.1 100 Continue\r\n\r\n${whole206}`, 'latin1');
      const blank = response.indexOf('\r\n\r\n', 30);
      // Cut inside a header name, inside the blank line, and inside the body.
      for (const [from, to] of [[0, 60], [60, blank + 2], [blank + 2, blank + 7], [blank + 7, response.length]]) {
        socket.write(response.subarray(from, to));
        await sleep(15);
      }
    });
    try {
      const target = Buffer.alloc(10);
      expect(await clientFor().getRangeInto(server.url(), 5, target)).toEqual({ etag: '"pieces"', totalSize: whole.length });
      expect(target.equals(whole.subarray(5, 15))).toBe(true);
    } finally {
      await server.stop();
    }
  });

  it('refuses bytes beyond the Content-Length, and a head that is not HTTP', async () => {
    const server = await rawServer((socket, head, connection) => {
      const [first, last] = rangeOf(head);
      if (connection === 1) socket.write(Buffer.concat([partial(first, last), Buffer.from('XX')]));
      else socket.write('SSH-2.0-OpenSSH\r\n\r\n');
    });
    try {
      const client = clientFor();
      await expect(client.getRangeInto(server.url(), 0, Buffer.alloc(10))).rejects.toThrow(/malformed response: more than the 10 bytes/);
      const error = await client.getRangeInto(server.url(), 0, Buffer.alloc(10)).catch((e) => e);
      expect(error).toBeInstanceOf(BrokenResponseError);
      expect(error.message).toMatch(/malformed response: status line "SSH-2.0-OpenSSH"/);
    } finally {
      await server.stop();
    }
  });
});

describe('RangeGetClient over https', () => {
  let server: Running;
  let ca: Buffer;
  const data = seededBytes(8 * 1024 * 1024 + 17, 3);
  beforeAll(async () => {
    const dir = tempDir('range-get-tls-');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-days', '1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    ca = readFileSync(join(dir, 'cert.pem'));
    server = await listen(createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: ca }, serveRanges(data)), 'https');
  });
  afterAll(() => server.stop());

  it('reads ranges by name and by IP over one connection, trusting the given CA', async () => {
    const client = clientFor({ ca });
    const byName = new URL(server.url().href.replace('127.0.0.1', 'localhost'));
    await expectRange(client, byName, 0, 1, data);
    await expectRange(client, byName, data.length - 1, 1, data);
    for (let offset = 0; offset < data.length; offset += 2 * 1024 * 1024) {
      await expectRange(client, byName, offset, Math.min(2 * 1024 * 1024, data.length - offset), data);
    }
    expect(server.connections).toBe(1);
    await expectRange(client, server.url(), 1000, 5000, data);
    expect(server.connections).toBe(2); // another origin, another socket
  });

  it('refuses a certificate it cannot verify, as not transient', async () => {
    const error = await clientFor().getRangeInto(server.url(), 0, Buffer.alloc(10)).catch((e) => e);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(BrokenResponseError);
    expect(error.transient).toBeUndefined();
    expect(error.message).toMatch(/TLS connection to 127\.0\.0\.1:\d+ failed: self-signed certificate/);
  });
});

describe('RangeGetClient against s3rver with a presigned GetObject URL', () => {
  let s3: RunningS3Server;
  const object = seededBytes(5 * 1024 * 1024 + 123, 11);
  beforeAll(async () => {
    s3 = await startS3Server();
    await s3.s3.send(new CreateBucketCommand({ Bucket: 'ranges' }));
    await s3.s3.send(new PutObjectCommand({ Bucket: 'ranges', Key: 'dir/object.bin', Body: object }));
  });
  afterAll(() => s3.stop());

  const presign = async (key: string) => new URL(await getSignedUrl(s3.s3, new GetObjectCommand({ Bucket: 'ranges', Key: key }), { expiresIn: 600 }));

  it('reads ranges equal to the object, pinned by its ETag', async () => {
    const url = await presign('dir/object.bin');
    // The S3 source sends Range (and If-Match) unsigned alongside such a URL: only host is signed.
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('host');
    const client = clientFor();
    // (s3rver answers "bytes=0-0" with the whole object; see range-quirks.ts.)
    for (const [offset, length] of [[1000, 1], [object.length - 1, 1], [0, 2], [12345, 3 * 1024 * 1024], [0, object.length]]) {
      await expectRange(client, url, offset, length, object);
    }
    const head = await s3.s3.send(new HeadObjectCommand({ Bucket: 'ranges', Key: 'dir/object.bin' }));
    expect((await client.getRangeInto(url, 7, Buffer.alloc(3))).etag).toBe(head.ETag);
  });

  it("reports s3rver's XML errors", async () => {
    const client = clientFor();
    await expect(client.getRangeInto(await presign('dir/object.bin'), object.length, Buffer.alloc(1))).rejects.toMatchObject({
      status: 416,
      code: 'InvalidRange',
      transient: false,
      message: 'HTTP 416 InvalidRange: The requested range is not satisfiable',
    });
    await expect(client.getRangeInto(await presign('dir/missing.bin'), 0, Buffer.alloc(1))).rejects.toMatchObject({
      status: 404,
      code: 'NoSuchKey',
      transient: false,
    });
  });
});
