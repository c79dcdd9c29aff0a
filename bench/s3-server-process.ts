/**
 * s3rver in its own process for the benchmark, so the server's memory and CPU are not counted
 * as ours. Prints its endpoint as one line, then serves until killed.
 */
import { startS3Server } from '../test/helpers/s3-server';

startS3Server().then(
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
