/**
 * `imaging serve` as a process of a test (or something that starts it, such as `npm start`):
 * resolves once it has printed its EC2 endpoint and, with the embedded S3 server, its S3
 * endpoint; a process that exits or takes too long is stopped and the start rejects with its
 * output.
 */
import { join } from 'path';
import { spawnChild, type ChildOptions, type RunningChild } from './child-process';
import { DIST } from './dist';

export interface RunningServe extends RunningChild {
  ec2: string;
  /** The embedded S3 server's endpoint (with `embeddedS3`). */
  s3?: string;
}

export interface ServeOptions extends ChildOptions {
  /** Instead of `node dist/cli/main.js serve`: the command and its arguments (`args` are then appended). */
  command?: [string, string[]];
  /** Wait for the embedded S3 server's endpoint too. */
  embeddedS3?: boolean;
  /** How long it may take to start (default 60 s). */
  startMs?: number;
}

export async function startServeProcess(args: string[], options: ServeOptions = {}): Promise<RunningServe> {
  const [command, commandArgs] = options.command ?? [process.execPath, [join(DIST, 'cli/main.js'), 'serve']];
  const serve = spawnChild(command, [...commandArgs, ...args], options);
  const startMs = options.startMs ?? 60_000;
  try {
    const ec2 = (await serve.waitForOutput(/EC2 endpoint:\s+(\S+)/, startMs))[1];
    const s3 = options.embeddedS3 ? (await serve.waitForOutput(/S3 endpoint:\s+(\S+)/, startMs))[1] : undefined;
    return { ...serve, ec2, ...(s3 ? { s3 } : {}) };
  } catch (error) {
    // A whole process group (npm and the node it starts) goes at once.
    if (options.detached) {
      try {
        process.kill(-serve.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await serve.stop('SIGKILL');
    throw new Error(`imaging serve did not start: ${(error as Error).message}`);
  }
}
