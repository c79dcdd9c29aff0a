/**
 * The processes a benchmark measures against, each a child that prints where it listens:
 * `imaging serve` (its EC2 endpoint) and an S3 server of bench/s3-server-process.ts (its
 * endpoint, first line). Their stderr goes to the bench's; stop() is SIGTERM and the exit.
 * peakRssMiB reads a process's peak resident memory.
 */
import { spawn, type ChildProcess } from 'child_process';
import { readFileSync } from 'fs';
import { join } from 'path';
import { onCpuOf } from './bench-support';
import type { S3ServerKind } from './s3-server-process';

export interface BenchProcess {
  child: ChildProcess;
  pid: number;
  stop(): Promise<void>;
}

/** Spawns and resolves with the first match of `ready` in its stdout; rejects if it exits first. */
async function startPrinting(what: string, command: string, args: string[], env: NodeJS.ProcessEnv | undefined, ready: RegExp): Promise<BenchProcess & { ready: string }> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'], env });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const match = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk) => {
      out += chunk;
      const m = ready.exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}`)));
  });
  return {
    child,
    pid: child.pid!,
    ready: match,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** `imaging serve` on free ports with its data in `dataDir`, the user's and the service's key pair `creds`. */
export async function startServeProcess(dataDir: string, s3Endpoint: string, creds: { accessKeyId: string; secretAccessKey: string }, moreArgs: string[] = []): Promise<BenchProcess & { ec2: string }> {
  const args = [join(__dirname, '../cli/main.js'), 'serve', '--data-dir', dataDir, '--port', '0', '--admin-port', '0', '--s3-endpoint', s3Endpoint, ...moreArgs, '--log-level', 'warn'];
  const env = { ...process.env, IMAGING_ACCESS_KEY_ID: creds.accessKeyId, IMAGING_SECRET_ACCESS_KEY: creds.secretAccessKey };
  const started = await startPrinting('imaging serve', process.execPath, args, env, /EC2 endpoint:\s+(\S+)/);
  return { ...started, ec2: started.ready };
}

/**
 * An S3 server process (the bench store keeps its objects in `directory`; s3rver in a temp dir of
 * its own); `pinned` puts it on the server's CPU (bench-support onCpuOf).
 */
export async function startS3ServerProcess(kind: S3ServerKind, directory?: string, options: { pinned?: boolean } = {}): Promise<BenchProcess & { endpoint: string }> {
  // The bench store receives GiBs in 64 KiB socket chunks, whose memory sets off a major GC every
  // few dozen MiB; V8's parallel GC threads would spend ~1 CPU-s more per 2 GiB than one thread.
  const nodeFlags = kind === 'bench-store' ? ['--single-threaded-gc'] : [];
  const args = [...nodeFlags, join(__dirname, 's3-server-process.js'), kind, ...(directory ? [directory] : [])];
  const [command, commandArgs] = options.pinned ? onCpuOf('server', process.execPath, args) : [process.execPath, args];
  const started = await startPrinting(`${kind} process`, command, commandArgs, undefined, /^(.*)\n/);
  return { ...started, endpoint: started.ready.trim() };
}

export function peakRssMiB(pid: number): number {
  const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return Math.round(kb / 1024);
}
