/**
 * A stage as its own process, as it runs in a cluster: `node dist/functions/host/main.js` with
 * IMAGING_STAGE and the settings in `env`. Resolves once it consumes (or rejects with its output).
 */
import { spawn, type ChildProcess } from 'child_process';
import { join } from 'path';

const HOST = join(__dirname, '../../dist/functions/host/main.js');

export interface StageProcess {
  child: ChildProcess;
  /** Everything it wrote so far (stderr and stdout). */
  output(): string;
  /** Resolves with the exit code (or signal name) when it exits. */
  exited: Promise<number | string>;
  /** SIGKILL if still running; waits for the exit. */
  kill(): Promise<void>;
}

export async function startStageProcess(stage: string, env: Record<string, string>): Promise<StageProcess> {
  const child = spawn(process.execPath, [HOST], {
    env: { PATH: process.env.PATH ?? '', TMPDIR: process.env.TMPDIR ?? '/tmp', IMAGING_STAGE: stage, IMAGING_HOST_MODE: 'jetstream', IMAGING_ADMIN_PORT: '0', IMAGING_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const running: StageProcess = {
    child,
    output: () => output,
    exited,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
  const deadline = Date.now() + 30_000;
  while (!/consuming /.test(output)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`stage ${stage} exited: ${output}`);
    if (Date.now() > deadline) {
      await running.kill();
      throw new Error(`stage ${stage} did not start within 30 s: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return running;
}
