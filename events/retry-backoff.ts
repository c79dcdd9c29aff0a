/**
 * How long a failed event waits before its next attempt: capped exponential back-off, the same
 * on the JetStream bus and the in-process bus. With the defaults (1 s doubling to at most 60 s,
 * 12 attempts) an event rides out a 5-minute outage of S3, NATS or MongoDB before its task is
 * failed: the waits add up to 1+2+4+8+16+32+60×5 = 363 s.
 */
export interface RetryBackoff {
  /** Wait after the first failed attempt (IMAGING_RETRY_BACKOFF_MS). */
  firstMs: number;
  /** Longest wait between two attempts (IMAGING_RETRY_BACKOFF_MAX_MS). */
  maxMs: number;
}

export const DEFAULT_RETRY_BACKOFF: RetryBackoff = { firstMs: 1000, maxMs: 60_000 };

/** The outage the default budget must ride out (checked by test/unit/events/retry-backoff.test.ts). */
export const OUTAGE_TO_RIDE_OUT_MS = 5 * 60_000;

/** The wait after attempt `attempt` (1-based) failed. */
export function retryDelayMs(backoff: RetryBackoff, attempt: number): number {
  const doublings = Math.max(0, Math.min(attempt - 1, 40));
  return Math.min(backoff.firstMs * 2 ** doublings, Math.max(backoff.firstMs, backoff.maxMs));
}

/** A bus's `retryDelayMs` option for `backoff`. */
export function retryDelays(backoff: RetryBackoff): (attempt: number) => number {
  return (attempt) => retryDelayMs(backoff, attempt);
}

/** How long an event keeps being retried, waits only: the sum of the waits between `maxDeliver` attempts. */
export function retryBudgetMs(backoff: RetryBackoff, maxDeliver: number): number {
  let total = 0;
  for (let attempt = 1; attempt < maxDeliver; attempt++) total += retryDelayMs(backoff, attempt);
  return total;
}
