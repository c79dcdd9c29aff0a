import { dirname, join } from 'path';
import { MongoClient } from 'mongodb';
import { spawnChild } from './child-process';
import { freePort } from './free-port';
import { waitUntil } from './wait-until';

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
  const server = spawnChild(JONGODB, [`--port=${port}`]);
  const uri = `mongodb://127.0.0.1:${port}`;
  const stop = () => server.stop();
  try {
    await waitUntil(() => answersPing(uri), { what: `jongodb answering ping on ${uri}`, timeoutMs, everyMs: 100, gaveUp: server.ended });
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${server.output()}`);
  }
  return { uri, stop };
}

async function answersPing(uri: string): Promise<boolean> {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 500, connectTimeoutMS: 500 });
  try {
    await client.connect();
    await client.db('admin').command({ ping: 1 });
    return true;
  } catch {
    return false;
  } finally {
    await client.close().catch(() => undefined);
  }
}
