import { spawn } from 'child_process';
import { dirname, join } from 'path';
import { MongoClient } from 'mongodb';
import { freePort } from './free-port';

export interface RunningMongoServer {
  uri: string;
  stop(): Promise<void>;
}

// Resolved through node's module lookup, so this works from test/helpers and from dist/test/helpers (the benches).
const JONGODB = join(dirname(require.resolve('@jongodb/memory-server-bin-linux-x64-gnu/package.json')), 'bin/jongodb');


/**
 * Starts jongodb (a MongoDB wire-compatible server) on a free port and resolves once the
 * driver can ping it.
 */
export async function startMongoServer(timeoutMs = 30000): Promise<RunningMongoServer> {
  const port = await freePort();
  const child = spawn(JONGODB, [`--port=${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const uri = `mongodb://127.0.0.1:${port}`;

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killTimer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killTimer);
    }
  };

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`jongodb exited with ${child.exitCode}: ${output}`);
    const client = new MongoClient(uri, { serverSelectionTimeoutMS: 500, connectTimeoutMS: 500 });
    try {
      await client.connect();
      await client.db('admin').command({ ping: 1 });
      return { uri, stop };
    } catch (err) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`jongodb did not answer ping on ${uri} within ${timeoutMs} ms: ${(err as Error).message}\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      await client.close().catch(() => undefined);
    }
  }
}
