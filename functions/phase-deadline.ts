/**
 * A deadline per phase of a handler: the work must show a sign of progress (a progress report,
 * which calls delivery.working()) at least every `ms`; a phase that goes silent longer (a call
 * that hangs past every timeout, a stuck stream) fails the attempt with a ServerError naming the
 * stage and how long it was silent, and frees the worker even if the stuck call never returns.
 * The attempt's own outputs are fenced by its lease, so a call that wakes up later commits nothing.
 */
import type { Delivery } from '../events/bus';
import { ServerError } from './errors';

export const DEFAULT_PHASE_DEADLINE_MS = 10 * 60_000;

export class PhaseDeadline {
  private last = Date.now();
  private readonly timer: NodeJS.Timeout;
  private readonly expired = new AbortController();
  private readonly failed: Promise<never>;
  /** The delivery the work sees: its progress resets the deadline; its signal also ends at the deadline. */
  readonly delivery: Delivery;

  constructor(stage: string, ms: number, outer: Delivery) {
    let reject!: (error: Error) => void;
    this.failed = new Promise<never>((_resolve, rejectWith) => (reject = rejectWith));
    this.failed.catch(() => undefined);
    this.timer = setInterval(() => {
      const silent = Date.now() - this.last;
      if (silent < ms) return;
      clearInterval(this.timer);
      const error = new ServerError(`the ${stage} stage made no progress for ${Math.round(silent / 1000)} s (phase deadline ${ms} ms); the attempt was abandoned`);
      this.expired.abort(error);
      reject(error);
    }, Math.max(50, Math.min(1000, ms / 4)));
    this.timer.unref();
    const signals = [this.expired.signal, ...(outer.signal ? [outer.signal] : [])];
    this.delivery = {
      attempt: outer.attempt,
      working: () => {
        this.last = Date.now();
        outer.working();
      },
      signal: AbortSignal.any(signals),
    };
  }

  /** `work`, or the deadline's ServerError if a phase goes silent first. */
  run<T>(work: Promise<T>): Promise<T> {
    return Promise.race([work, this.failed]);
  }

  get expiredError(): unknown {
    return this.expired.signal.aborted ? this.expired.signal.reason : undefined;
  }

  end(): void {
    clearInterval(this.timer);
  }
}
