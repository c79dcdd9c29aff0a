/**
 * A real nats-server with JetStream for one test file: a free port, a throw-away store
 * directory, and a stop() that leaves nothing behind.
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { spawnChild, type RunningChild } from './child-process';
import { freePort } from './free-port';

const NATS_SERVER = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

export interface RunningNatsServer {
  url: string;
  stop(): Promise<void>;
  /** Stops the server (SIGTERM, or `signal`) and starts it again on the same port with the same JetStream store. */
  restart(options?: { signal?: NodeJS.Signals; downMs?: number }): Promise<void>;
}

/** `port` restarts a server where a stopped one was (clients reconnect to the same URL). */
export async function startNatsServer(options: { port?: number } = {}): Promise<RunningNatsServer> {
  const port = options.port ?? (await freePort());
  const storeDir = mkdtempSync(join(tmpdir(), 'imaging-nats-'));
  let server: RunningChild | undefined;
  const launch = async (): Promise<void> => {
    server = spawnChild(NATS_SERVER, ['-js', '-sd', storeDir, '-p', String(port), '-a', '127.0.0.1'], { keep: 'stderr' });
    // Logged once JetStream is ready too (the port opens before).
    await server.waitForOutput(/Server is ready/, 10_000);
  };
  const stop = async (): Promise<void> => {
    await server?.stop();
    rmSync(storeDir, { recursive: true, force: true });
  };
  try {
    await launch();
  } catch (error) {
    await stop();
    throw new Error(`nats-server did not start: ${(error as Error).message}`);
  }
  const restart = async ({ signal, downMs = 0 }: { signal?: NodeJS.Signals; downMs?: number } = {}): Promise<void> => {
    await server?.stop(signal);
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await launch();
  };
  return { url: `nats://127.0.0.1:${port}`, stop, restart };
}
