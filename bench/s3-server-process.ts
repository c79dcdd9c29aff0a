/**
 * An S3 server in its own process for the benchmarks, so the server's memory and CPU are not
 * counted as ours:
 *   node dist/bench/s3-server-process.js bench-store <directory>   the fast bench object store
 *   node dist/bench/s3-server-process.js s3rver                    s3rver, our compatibility server
 * Prints its endpoint as one line, then serves until killed.
 */
import { startS3Server } from '../test/helpers/s3-server';
import { startBenchObjectStore } from './bench-object-store';

export type S3ServerKind = 'bench-store' | 's3rver';

async function start(kind: string, directory: string | undefined): Promise<{ endpoint: string; stop(): Promise<void> }> {
  if (kind === 's3rver') return startS3Server();
  if (kind === 'bench-store' && directory) {
    const store = await startBenchObjectStore(directory);
    return { endpoint: store.endpoint, stop: () => store.close() };
  }
  throw new Error('usage: s3-server-process.js bench-store <directory> | s3rver');
}

start(process.argv[2] ?? 's3rver', process.argv[3]).then(
  (server) => {
    process.stdout.write(`${server.endpoint}\n`);
    const stop = (): void => {
      server.stop().finally(() => process.exit(0));
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  },
  (error) => {
    process.stderr.write(`error: ${(error as Error).message}\n`);
    process.exit(1);
  },
);
