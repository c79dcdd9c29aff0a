/**
 * A real S3 server for tests: s3rver on a free port, storing objects in its own temp dir.
 * Shared by every test that needs object storage (toolkit, stages, e2e).
 */
import { S3Client } from '@aws-sdk/client-s3';
import { rmSync } from 'fs';
import type { Server } from 'http';
import type { AddressInfo, Socket } from 'net';
import { join } from 'path';
import { makeS3Client } from '../../toolkit/io/object-storage';
import { tempDir } from './disk-corpus';

// s3rver ships no type declarations; this is the part of its API we use.
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver: new (options: Record<string, unknown>) => S3rverInstance = require('s3rver');

export interface RunningS3Server {
  /** e.g. http://127.0.0.1:40123 */
  endpoint: string;
  /** A client for this server (path-style, s3rver's fixed credentials). */
  s3: S3Client;
  /** Credentials s3rver accepts; it does not check signatures, but SDKs insist on having some. */
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** An outage: stops listening (connections are refused), keeping the objects. */
  goDown(): Promise<void>;
  /** Ends an outage: listens again on the same port with the same objects. */
  comeBack(): Promise<void>;
  /** The file s3rver keeps an object's bytes in (it serves the file as it finds it, holes and all). */
  objectFile(bucket: string, key: string): string;
  /** Bytes the server has sent so far on all its connections (bodies and HTTP headers). */
  bytesSent(): number;
  stop(): Promise<void>;
}

export async function startS3Server(): Promise<RunningS3Server> {
  const directory = tempDir('s3rver-');
  const listen = async (port: number) => {
    const server = new S3rver({
      address: '127.0.0.1',
      port,
      silent: true,
      directory,
      // Virtual-host buckets would need DNS; every client here uses path-style addressing.
      vhostBuckets: false,
    });
    const address = await server.run();
    // Count what the server sends, whoever reads (SDK clients, presigned ranged GETs).
    server.httpServer?.on('connection', (socket: Socket) => {
      open.add(socket);
      socket.on('close', () => {
        closedBytes += socket.bytesWritten;
        open.delete(socket);
      });
    });
    return { server, address };
  };
  const open = new Set<Socket>();
  let closedBytes = 0;
  let { server, address } = await listen(0);
  let up = true;
  const endpoint = `http://127.0.0.1:${address.port}`;
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', region: 'us-east-1' };
  const s3 = makeS3Client({ endpoint, forcePathStyle: true, ...credentials });
  const close = async () => {
    if (!up) return;
    up = false;
    // Keep-alive sockets from SDK clients would otherwise hold close() open.
    server.httpServer?.closeAllConnections();
    await server.close();
  };
  return {
    endpoint,
    s3,
    ...credentials,
    goDown: close,
    async comeBack() {
      if (up) return;
      ({ server, address } = await listen(address.port));
      up = true;
    },
    objectFile: (bucket, key) => {
      const parts = key.split('/');
      return join(directory, bucket, ...parts.slice(0, -1), `${parts[parts.length - 1]}._S3rver_object`);
    },
    bytesSent: () => closedBytes + [...open].reduce((sum, socket) => sum + socket.bytesWritten, 0),
    async stop() {
      s3.destroy();
      await close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
