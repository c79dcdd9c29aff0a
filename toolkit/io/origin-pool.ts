import { ConcurrencyLimit } from '../map-limit';

/** What the pool needs of a connection. */
export interface PooledConnection {
  readonly origin: { key: string };
  /** The pool's generation when it opened. */
  readonly generation: number;
  /** Open, idle, and not known to be closed by the server. */
  readonly usable: boolean;
  destroy(): void;
}

export interface OriginPoolOptions {
  /** Requests in flight per origin; more wait, first come first served. */
  connectionsPerOrigin: number;
  /** Idle kept-alive connections kept per origin. */
  maxIdlePerOrigin: number;
}

/**
 * Connections per origin (scheme://host:port): at most `connectionsPerOrigin` requests in flight
 * to one origin, the rest waiting in arrival order, and up to `maxIdlePerOrigin` kept-alive
 * connections kept for the next requests.
 *
 * The cap is what keeps one caller from taking the process down: a read over 23,500 parts once
 * opened 20,000 sockets at once (issue 11). A connection is opened only when a request holds a
 * slot and finds no idle one, so an origin never has more connections than slots either.
 */
export class OriginPool<C extends PooledConnection> {
  /** Kept-alive connections with no request in flight, per origin; the most recently used last. */
  private readonly idle = new Map<string, C[]>();
  private readonly slots = new Map<string, ConcurrencyLimit>();
  private currentGeneration = 0;

  constructor(private readonly options: OriginPoolOptions) {}

  /** Connections opened now are of this generation; close() starts the next. */
  get generation(): number {
    return this.currentGeneration;
  }

  /** Runs `fn` once a slot for `originKey` is free, holding the slot until it settles. */
  async withSlot<T>(originKey: string, fn: () => Promise<T>): Promise<T> {
    let slots = this.slots.get(originKey);
    if (!slots) this.slots.set(originKey, (slots = new ConcurrencyLimit(this.options.connectionsPerOrigin)));
    try {
      return await slots.run(fn);
    } finally {
      // An origin no one is reading from costs nothing.
      if (slots.active === 0 && slots.queued === 0) this.slots.delete(originKey);
    }
  }

  /** An idle connection to the origin that is still usable, if there is one. */
  takeIdle(originKey: string): C | undefined {
    const pool = this.idle.get(originKey);
    while (pool?.length) {
      const connection = pool.pop()!;
      if (connection.usable) return connection;
      connection.destroy();
    }
    return undefined;
  }

  /** A connection whose response was complete and which the server keeps open. */
  keep(connection: C): void {
    let pool = this.idle.get(connection.origin.key);
    if (connection.generation !== this.currentGeneration || (pool?.length ?? 0) >= this.options.maxIdlePerOrigin) {
      connection.destroy();
      return;
    }
    if (!pool) this.idle.set(connection.origin.key, (pool = []));
    pool.push(connection);
  }

  /** An idle connection that closed, failed, or received bytes nobody asked for. */
  forget(connection: C): void {
    const pool = this.idle.get(connection.origin.key);
    const index = pool?.indexOf(connection) ?? -1;
    if (index >= 0) pool!.splice(index, 1);
    if (pool?.length === 0) this.idle.delete(connection.origin.key);
  }

  /** Destroys idle connections; those in use now are not kept once their request is done. */
  close(): void {
    this.currentGeneration++;
    const all = [...this.idle.values()].flat();
    this.idle.clear();
    for (const connection of all) connection.destroy();
  }
}
