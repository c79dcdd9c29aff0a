/**
 * A pass that runs every `intervalMs` in the background (the sweeper's, the janitor's): a slow
 * pass is not overtaken by the next, a failed one is logged and the next tries again, and
 * stopping waits for the pass under way. The timer does not keep the process alive.
 */
export interface PeriodicPass {
  stop(): Promise<void>;
}

export function runPeriodically(pass: () => Promise<unknown>, intervalMs: number, onFailure: (err: unknown) => void): PeriodicPass {
  let stopped = false;
  let running: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    if (stopped || running) return;
    running = pass()
      .catch(onFailure)
      .finally(() => (running = undefined));
  }, intervalMs);
  timer.unref();
  return {
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
