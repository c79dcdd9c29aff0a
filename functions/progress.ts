/**
 * Reports long work into the task document (progress, bytes converted), keeps the bus delivery
 * alive, and notices a cancellation request, or the delivery being handed back, while the work
 * goes on.
 */
import type { StageContext } from './stage';
import { isTerminal, updateTask } from '../tasks/state-machine';

export class TaskProgress {
  private lastWrite = 0;
  private writing: Promise<void> = Promise.resolve();
  readonly abort = new AbortController();

  constructor(
    private readonly ctx: StageContext,
    private readonly taskId: string,
    /** The share of overall task progress this stage covers, e.g. [10, 90]. */
    private readonly window: readonly [number, number],
    private readonly intervalMs = 1000,
  ) {
    // A delivery handed back on shutdown stops the work like a cancellation (and its clean-up).
    const handedBack = ctx.delivery.signal;
    if (handedBack?.aborted) this.abort.abort();
    else handedBack?.addEventListener('abort', () => this.abort.abort(), { once: true });
  }

  /** Call as often as you like; writes at most once per interval. */
  report(done: number, total: number): void {
    this.ctx.delivery.working();
    const now = Date.now();
    if (now - this.lastWrite < this.intervalMs) return;
    this.lastWrite = now;
    this.writing = this.writing.then(() => this.write(done, total)).catch((err) => this.ctx.log.warn({ taskId: this.taskId, err: String(err) }, 'progress write failed'));
  }

  /** Waits for the last progress write (so the final figures are stored before moving on). */
  async flush(done: number, total: number): Promise<void> {
    await this.writing;
    await this.write(done, total);
  }

  private async write(done: number, total: number): Promise<void> {
    const [from, to] = this.window;
    const progress = Math.floor(from + (total > 0 ? (done / total) * (to - from) : 0));
    const doc = await updateTask(this.ctx.tasks, this.taskId, (d) => {
      if (isTerminal(d.state)) return undefined;
      return { ...d, progress: Math.max(d.progress, progress), bytesConverted: done };
    });
    if (!doc || isTerminal(doc.state) || doc.cancelRequested) this.abort.abort();
  }
}
