/**
 * A pool of worker threads that run one batch of synchronous (de)compression per message: the
 * plumbing the inflate pool and the VMDK grain-deflate pool share.
 *
 * - Workers start on demand, up to `size`; a message goes to the least busy one.
 * - Idle workers never keep the process alive; busy ones do until they answer.
 * - A worker that dies fails its pending batches and is replaced by the next call.
 *
 * Each worker runs a compiled TypeScript module of its own (workerModulePath); after each batch it
 * calls collectGarbage (worker-gc.ts) so that a batch's external memory does not pile up.
 */
import { existsSync } from 'fs';
import { join, relative, resolve } from 'path';
import { Worker } from 'worker_threads';

/** The repository root when this module runs from the sources (under ts-jest); unused from dist/. */
const SOURCE_ROOT = resolve(__dirname, '../..');

/**
 * The JavaScript file to start a worker from: the compiled module `name` beside the calling module
 * (`dirname` is its __dirname). Under ts-jest the sources run as .ts and have no .js beside them;
 * the worker then runs the module's compiled output in dist/, which `npm test` and jest's global
 * set-up build before any test runs.
 */
export function workerModulePath(dirname: string, name: string): string {
  const beside = join(dirname, `${name}.js`);
  if (existsSync(beside)) return beside;
  const compiled = join(SOURCE_ROOT, 'dist', relative(SOURCE_ROOT, dirname), `${name}.js`);
  if (existsSync(compiled)) return compiled;
  throw new Error(`worker module ${name} is not built: neither ${beside} nor ${compiled} exists (run npm run build)`);
}

/** What a worker posts back: its answer to message `id`, or a failure the pool turns into an error. */
export interface WorkerReply {
  id: number;
}

interface Pending<Reply> {
  resolve(reply: Reply): void;
  reject(error: Error): void;
}

class PooledWorker<Reply extends WorkerReply> {
  private readonly worker: Worker;
  readonly pending = new Map<number, Pending<Reply>>();
  private nextId = 0;
  dead = false;

  constructor(modulePath: string, name: string) {
    // Batches need almost no JavaScript heap (their buffers are external memory); small limits
    // keep each worker's share of the process's resident memory small.
    this.worker = new Worker(modulePath, { resourceLimits: { maxOldGenerationSizeMb: 24, maxYoungGenerationSizeMb: 2 } });
    this.worker.on('message', (reply: Reply) => {
      const pending = this.pending.get(reply.id);
      if (!pending) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) this.worker.unref();
      pending.resolve(reply);
    });
    const fail = (error: Error): void => {
      this.dead = true;
      for (const pending of this.pending.values()) pending.reject(error);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`${name} worker exited with code ${code}`)));
    // Only now: adding a 'message' listener refs the worker's port again, so a worker started
    // idle (startAll) and never sent a batch would keep the process alive.
    this.worker.unref();
  }

  run(message: object, transfer: readonly ArrayBuffer[]): Promise<Reply> {
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ ...message, id }, transfer as ArrayBuffer[]);
    });
  }
}

/** Set by limitWorkerThreads: the most threads any one pool starts (the process's CPU parallelism). */
let threadLimit: number | undefined;

/** Caps every pool of this process at `threads` workers (from the next message on). */
export function limitWorkerThreads(threads: number | undefined): void {
  if (threads !== undefined && (!Number.isSafeInteger(threads) || threads < 1)) throw new RangeError(`worker thread limit must be a positive integer, not ${threads}`);
  threadLimit = threads;
}

/** Every pool of the process, for workerThreadsStarted. */
const pools = new Set<{ readonly name: string; readonly started: number }>();

/** Worker threads alive now in every pool of this process, by pool name. */
export function workerThreadsStarted(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const pool of pools) out[pool.name] = (out[pool.name] ?? 0) + pool.started;
  return out;
}

export class WorkerPool<Reply extends WorkerReply> {
  private readonly workers: PooledWorker<Reply>[] = [];

  /**
   * `modulePath` is the worker's compiled module (workerModulePath); it answers every message
   * with a reply carrying the message's `id`.
   * `startAll`: the first call starts the whole pool, so the workers warm up in parallel.
   */
  constructor(
    readonly name: string,
    private readonly modulePath: string,
    readonly size: number,
    private readonly startAll = false,
  ) {
    pools.add(this);
  }

  /** Sends `message` to the least busy worker; `transfer` moves those buffers to it. */
  run(message: object, transfer: readonly ArrayBuffer[] = []): Promise<Reply> {
    return this.leastBusy().run(message, transfer);
  }

  /** Workers alive now (started on demand, up to the pool's size under the process's limit). */
  get started(): number {
    return this.workers.filter((worker) => !worker.dead).length;
  }

  private leastBusy(): PooledWorker<Reply> {
    const { workers } = this;
    for (let i = workers.length - 1; i >= 0; i--) if (workers[i].dead) workers.splice(i, 1);
    const size = Math.min(this.size, threadLimit ?? this.size);
    if (this.startAll && workers.length === 0) while (workers.length < size) workers.push(new PooledWorker<Reply>(this.modulePath, this.name));
    while (workers.length < size && workers.every((worker) => worker.pending.size > 0)) workers.push(new PooledWorker<Reply>(this.modulePath, this.name));
    return workers.reduce((best, worker) => (worker.pending.size < best.pending.size ? worker : best));
  }
}
