/**
 * A real nats-server with JetStream for one test file: a free port, a throw-away store
 * directory, and a stop() that leaves nothing behind.
 */
import { spawn, type ChildProcess } from 'child_process';
import { mkdtempSync, rmSync } from 'fs';
import { createConnection } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
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
  let child: ChildProcess;
  let exited: Promise<void>;
  let output = '';
  const halt = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    }
  };
  const launch = async (): Promise<void> => {
    output = '';
    child = spawn(NATS_SERVER, ['-js', '-sd', storeDir, '-p', String(port), '-a', '127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const started = child;
    exited = new Promise<void>((resolve) => started.once('exit', () => resolve()));
    await waitForPort(port, () => started.exitCode !== null, 10_000);
    // The port opens before JetStream is ready; the server logs this line once it is.
    await waitFor(() => /Server is ready/.test(output), 10_000);
  };
  const stop = async (): Promise<void> => {
    await halt();
    rmSync(storeDir, { recursive: true, force: true });
  };
  try {
    await launch();
  } catch (error) {
    await stop();
    throw new Error(`nats-server did not start: ${(error as Error).message}\n${output}`);
  }
  const restart = async ({ signal, downMs = 0 }: { signal?: NodeJS.Signals; downMs?: number } = {}): Promise<void> => {
    await halt(signal);
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await launch();
  };
  return { url: `nats://127.0.0.1:${port}`, stop, restart };
}


async function waitForPort(port: number, died: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (died()) throw new Error('nats-server exited');
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`port ${port} did not open within ${timeoutMs} ms`);
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
