/**
 * A stage as its own process, as it runs in a cluster: `node dist/functions/host/main.js` with
 * IMAGING_STAGE and the settings in `env`, consuming from JetStream. Resolves once it consumes
 * (or rejects with its output).
 */
import { join } from 'path';
import { spawnChild, type RunningChild } from './child-process';
import { DIST } from './dist';

export interface StageProcess<S extends string = string> extends RunningChild {
  stage: S;
  /** SIGKILL if still running; waits for the exit. */
  kill(): Promise<void>;
}

export interface StageProcessOptions {
  /** How long it may take to start consuming (default 30 s). */
  startMs?: number;
}

/**
 * `env` goes over a bare environment (PATH, TMPDIR, an admin port of its own, warn-level logs);
 * pass `...process.env` in it for more.
 */
export async function startStageProcess<S extends string>(stage: S, env: NodeJS.ProcessEnv, options: StageProcessOptions = {}): Promise<StageProcess<S>> {
  const running = spawnChild(process.execPath, [join(DIST, 'functions/host/main.js')], {
    env: { PATH: process.env.PATH ?? '', TMPDIR: process.env.TMPDIR ?? '/tmp', IMAGING_ADMIN_PORT: '0', IMAGING_LOG_LEVEL: 'warn', ...env, IMAGING_STAGE: stage, IMAGING_HOST_MODE: 'jetstream' },
  });
  const proc: StageProcess<S> = { ...running, stage, kill: () => running.stop('SIGKILL') };
  try {
    await running.waitForOutput(/consuming /, options.startMs ?? 30_000);
  } catch (error) {
    await proc.kill();
    throw new Error(`stage ${stage} did not start: ${(error as Error).message}`);
  }
  return proc;
}
