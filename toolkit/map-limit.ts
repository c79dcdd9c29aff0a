/**
 * Bounded concurrency: runs `fn` over `items` with at most `limit` calls in flight and returns
 * the results in item order. After the first failure no further item is started (calls already
 * running finish), and the promise rejects with that failure.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failed = false;
  const runners = Array.from({ length: Math.min(Math.max(1, limit), items.length) }, async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i], i);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  });
  await Promise.all(runners);
  return results;
}

/**
 * A bound on calls in flight shared by every caller of one object: run() waits for a free slot
 * (first come, first served), then calls `fn`. Unlike mapLimit it bounds calls that arrive
 * separately (many reads at once, each of many pieces).
 */
export class ConcurrencyLimit {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`a concurrency limit must be a whole number ≥ 1, not ${limit}`);
  }

  /** Calls in flight now (never more than `limit`). */
  get active(): number {
    return this.running;
  }

  /** Calls waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      // The slot passes straight to the next caller: `running` stays as it is.
      if (next) next();
      else this.running--;
    }
  }
}
