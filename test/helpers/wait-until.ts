/**
 * The one wait loop of the test helpers: polls a condition until it holds, gives up after a
 * deadline, and stops at once when what it waits for can no longer come (a process exited).
 */
export interface WaitOptions {
  /** What is awaited, for the error: "nats-server ready". */
  what: string;
  timeoutMs: number;
  /** Pause between two looks (default 50 ms). */
  everyMs?: number;
  /** A reason to stop waiting now (e.g. "exited with 1"), or undefined to go on. */
  gaveUp?: () => string | undefined;
}

export async function waitUntil(holds: () => boolean | Promise<boolean>, options: WaitOptions): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await holds()) return;
    const reason = options.gaveUp?.();
    if (reason) throw new Error(`${options.what}: ${reason}`);
    if (Date.now() > deadline) throw new Error(`${options.what}: not within ${options.timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, options.everyMs ?? 50));
  }
}
