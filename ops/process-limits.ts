/**
 * The limits of one process that are not per request: the toolkit's worker threads (its CPU
 * parallelism) and the scratch space work that needs local disk reserves from. Applied once at
 * start by `imaging serve` and the stage host, from the one settings schema.
 */
import type { Settings } from '../config/settings-schema';
import { ScratchSpace, setProcessScratchSpace } from '../toolkit/io/scratch-space';
import { limitWorkerThreads } from '../toolkit/workers/worker-pool';

export type ProcessLimitSettings = Pick<Settings, 'workerThreads' | 'scratchDir' | 'scratchLimitMb' | 'scratchWhenFull'>;

export function applyProcessLimits(settings: ProcessLimitSettings): ScratchSpace {
  limitWorkerThreads(settings.workerThreads);
  const scratch = new ScratchSpace({
    dir: settings.scratchDir,
    limitBytes: settings.scratchLimitMb * 1024 * 1024,
    whenFull: settings.scratchWhenFull,
    settingNames: { dir: 'IMAGING_SCRATCH_DIR', limit: 'IMAGING_SCRATCH_LIMIT_MB', whenFull: 'IMAGING_SCRATCH_WHEN_FULL' },
  });
  setProcessScratchSpace(scratch);
  return scratch;
}
