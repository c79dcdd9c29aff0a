/**
 * moto_server as a second S3 server for tests: one we did not write, which checks more of S3
 * than s3rver and implements UploadPartCopy, ListMultipartUploads and AbortMultipartUpload.
 * One per test file: a free port, a wait until it answers HTTP, a stop() that kills it.
 *
 * Suites that need it use describeWithMoto(): when moto_server is not installed the suite is
 * skipped and the reason is printed once (install: `pip install 'moto[server]'`).
 */
import { accessSync, constants, statSync } from 'fs';
import { request } from 'http';
import { delimiter, join } from 'path';
import type { S3Client } from '@aws-sdk/client-s3';
import { makeS3Client } from '../../toolkit/io/object-storage';
import { spawnChild } from './child-process';
import { freePort } from './free-port';
import { waitUntil } from './wait-until';

const MOTO_SERVER = process.env.MOTO_SERVER_BIN ?? 'moto_server';

export interface RunningMotoServer {
  /** e.g. http://127.0.0.1:40123 */
  endpoint: string;
  /** A client for this server (path-style). */
  s3: S3Client;
  /** moto takes any key pair; these are the ones the helper's client uses. */
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  stop(): Promise<void>;
}

/**
 * Undefined when a moto_server executable is on PATH (or MOTO_SERVER_BIN is one), else why the
 * suites are skipped. Only looked up, not run: importing moto takes seconds (tens on a loaded
 * machine), and a moto_server that is there but broken must fail its suite, not skip it.
 */
export function motoServerMissing(): string | undefined {
  const candidates = MOTO_SERVER.includes('/') ? [MOTO_SERVER] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, MOTO_SERVER));
  const found = candidates.some((path) => {
    try {
      accessSync(path, constants.X_OK);
      return statSync(path).isFile();
    } catch {
      return false;
    }
  });
  return found ? undefined : `${MOTO_SERVER} is not on PATH; install it with pip install 'moto[server]' (or set MOTO_SERVER_BIN)`;
}

/** describe(), or describe.skip() with the reason printed when moto_server is absent. */
export function describeWithMoto(name: string, body: () => void): void {
  const missing = motoServerMissing();
  if (missing) {
     
    console.warn(`skipped "${name}": ${missing}`);
    describe.skip(`${name} (skipped: ${missing})`, body);
  } else {
    describe(name, body);
  }
}

export async function startMotoServer(): Promise<RunningMotoServer> {
  const port = await freePort();
  const server = spawnChild(MOTO_SERVER, ['-H', '127.0.0.1', '-p', String(port)], { keep: 'stderr', keepBytes: 64 * 1024 });
  const endpoint = `http://127.0.0.1:${port}`;
  const credentials = { accessKeyId: 'MOTO', secretAccessKey: 'MOTO', region: 'us-east-1' };
  const s3 = makeS3Client({ endpoint, forcePathStyle: true, ...credentials });
  const stop = async (): Promise<void> => {
    s3.destroy();
    await server.stop();
  };
  try {
    // The port opens before the app is ready to serve: wait for its API to answer.
    await waitUntil(async () => (await statusOf(`${endpoint}/moto-api/`)) === 200, { what: `moto_server on ${endpoint}`, timeoutMs: 60_000, everyMs: 100, gaveUp: server.ended });
  } catch (error) {
    await stop();
    throw new Error(`moto_server did not start: ${(error as Error).message}\n${server.output()}`);
  }
  return { endpoint, s3, ...credentials, stop };
}

/** The status of a GET of `url`, or undefined when nothing answers within 2 s. */
function statusOf(url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request(url, { timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.once('error', () => resolve(undefined));
    req.once('timeout', () => {
      req.destroy();
      resolve(undefined);
    });
    req.end();
  });
}
