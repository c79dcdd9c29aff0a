/**
 * A process a test starts and owns: its output kept (the tail, when it talks a lot), its exit
 * awaited, a wait for a line it prints, and a stop that ends it for sure (the signal, then
 * SIGKILL after a grace period).
 */
import { spawn, type ChildProcess } from 'child_process';
import { waitUntil } from './wait-until';

export interface RunningChild {
  child: ChildProcess;
  pid: number;
  /** What it wrote so far (stdout and stderr, as asked), at most the last `keepBytes`. */
  output(): string;
  /** Resolves with the exit code (or the signal's name) when it exits. */
  exited: Promise<number | string>;
  /** Why it is no longer running ("exited with 1"), or undefined while it runs. */
  ended(): string | undefined;
  /** Resolves with the match once its output matches `pattern`; rejects (with the output) if it exits or the time is up. */
  waitForOutput(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
  /** Sends `signal` (default SIGTERM) if it still runs, SIGKILL after `graceMs`; resolves once it is gone. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

export interface ChildOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Its own process group (a signal to -pid reaches all of it). */
  detached?: boolean;
  /** Which streams go into output() (default both). */
  keep?: 'both' | 'stderr';
  /** How much output to keep (default 256 KiB, the latest). */
  keepBytes?: number;
}

export function spawnChild(command: string, args: string[], options: ChildOptions = {}): RunningChild {
  const keep = options.keep ?? 'both';
  const keepBytes = options.keepBytes ?? 256 * 1024;
  const child = spawn(command, args, { env: options.env, cwd: options.cwd, detached: options.detached, stdio: ['ignore', keep === 'both' ? 'pipe' : 'ignore', 'pipe'] });
  let output = '';
  const append = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.length > keepBytes) output = output.slice(-Math.floor(keepBytes / 2));
  };
  child.stdout?.on('data', append);
  child.stderr!.on('data', append);
  // A command that cannot be started ends as an exit, so waits stop instead of hanging.
  let spawnError: Error | undefined;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (err) => {
      spawnError = err;
      resolve('error');
    });
  });
  const running = () => child.exitCode === null && child.signalCode === null && !spawnError;
  const ended = () => {
    if (spawnError) return `could not start ${command}: ${spawnError.message}`;
    if (child.exitCode !== null) return `exited with ${child.exitCode}`;
    if (child.signalCode !== null) return `killed by ${child.signalCode}`;
    return undefined;
  };
  return {
    child,
    pid: child.pid ?? 0,
    output: () => output,
    exited,
    ended,
    async waitForOutput(pattern, timeoutMs) {
      let match: RegExpExecArray | null = null;
      try {
        await waitUntil(() => (match = pattern.exec(output)) !== null, { what: `${command} printing ${pattern}`, timeoutMs, gaveUp: ended });
      } catch (error) {
        throw new Error(`${(error as Error).message}; its output:\n${output.slice(-8000)}`);
      }
      return match!;
    },
    async stop(signal = 'SIGTERM', graceMs = 5000) {
      if (running()) {
        child.kill(signal);
        const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(killer);
      }
      await exited;
    },
  };
}
