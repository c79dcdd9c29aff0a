/**
 * Issue 10, item 3: an S3 endpoint that accepts connections and never answers must not pin the
 * caller. makeS3Client's request timeout and bounded retries make the call fail, naming the
 * timeout, within attempts × timeout plus the backoff.
 */
import { createServer, type Server, type Socket } from 'net';
import { HeadBucketCommand } from '@aws-sdk/client-s3';
import { makeS3Client } from '../../../toolkit/io/object-storage';

let blackhole: Server;
let endpoint: string;
const sockets = new Set<Socket>();
let connections = 0;

beforeAll(async () => {
  // Accepts, reads, never answers.
  blackhole = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('data', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(blackhole.address() as { port: number }).port}`;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => blackhole.close(resolve));
});

test('a blackholed endpoint fails the call after the configured attempts, within the deadline', async () => {
  const s3 = makeS3Client({
    endpoint, region: 'us-east-1', accessKeyId: 'A', secretAccessKey: 'S', forcePathStyle: true,
    requestTimeoutMs: 300, connectionTimeoutMs: 300, maxAttempts: 3,
  });
  const started = Date.now();
  const error = await s3.send(new HeadBucketCommand({ Bucket: 'anything' })).then(
    () => undefined,
    (err: Error) => err,
  );
  const elapsed = Date.now() - started;
  s3.destroy();
  expect(error).toBeDefined();
  expect(`${error!.name}: ${error!.message}`).toMatch(/timeout|timed out/i);
  expect(connections).toBe(3); // retried, as configured
  // 3 × 300 ms of silence plus the SDK's backoff (under 2 × 1 s jittered here), with slack for a busy machine.
  expect(elapsed).toBeLessThan(8000);
}, 30_000);
