/** The S3 endpoint `imaging serve` embeds when none is configured (s3rver, storing under the data dir). */
import type { Server } from 'http';
import type { AddressInfo } from 'net';

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
}
// s3rver ships no type declarations; this is the part of its API we use.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver: new (options: Record<string, unknown>) => S3rverInstance = require('s3rver');

export interface EmbeddedS3 {
  endpoint: string;
  stop(): Promise<void>;
}

// s3rver knows access keys through a process-wide registry of accounts; the bootstrap key is
// added to its built-in account so the service and its users sign with the same key pair.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const s3rverAccounts: { DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void } } = require('s3rver/lib/models/account');

export async function startEmbeddedS3(host: string, port: number, directory: string, keys: { accessKeyId: string; secretAccessKey: string }[]): Promise<EmbeddedS3> {
  for (const key of keys) s3rverAccounts.DUMMY_ACCOUNT.createKeyPair(key.accessKeyId, key.secretAccessKey);
  const server = new S3rver({ address: host, port, silent: true, directory, vhostBuckets: false });
  let address: AddressInfo;
  try {
    address = await server.run();
  } catch (err) {
    throw new Error(`cannot start the embedded S3 endpoint on ${host}:${port}: ${(err as Error).message}`);
  }
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    endpoint: `http://${shownHost}:${address.port}`,
    async stop() {
      server.httpServer?.closeAllConnections();
      await server.close();
    },
  };
}
