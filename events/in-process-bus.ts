/**
 * The event bus inside one process (`imaging serve`), with the delivery semantics of the
 * JetStream bus: asynchronous delivery, one durable consumer per (durable, type) whose
 * subscribers compete for events, redelivery of rejected events after a delay up to
 * maxDeliver, then onGiveUp. Events pass through the NATS binding on the way so handlers see
 * exactly what they would see over NATS (and never share an object with the publisher).
 *
 * Unlike JetStream there is no log: an event reaches the durables that exist when it is
 * published, and nothing survives the process. ackWaitMs is ignored: a handler in this
 * process cannot crash without taking the bus with it.
 */
import type { CloudEvent, CloudEventV1 } from 'cloudevents';
import { HAND_BACK_CLEANUP_MS, HandedBack, RetryLater, settlesWithin, type Delivery, type EventBus, type EventHandler, type StopOptions, type SubscribeOptions, type Subscription } from './bus';
import { fromNatsMessage, toNatsMessage, type NatsMessage } from './nats-binding';
import { consumerNameFor } from './subjects';

export interface InProcessBusOptions {
  /** Delay before a rejected event is offered again, by the attempt that failed (1-based). */
  retryDelayMs?: (attempt: number) => number;
  /** Window in which a second event with the same id is dropped, like JetStream's duplicate window. */
  duplicateWindowMs?: number;
  log?: { error(obj: object, msg?: string): void };
}

const DEFAULT_MAX_DELIVER = 5;

interface Pending {
  message: NatsMessage;
  attempt: number;
}

interface Subscriber {
  options: SubscribeOptions;
  handler: EventHandler;
  concurrency: number;
  running: Set<Promise<void>>;
  /** The deliveries behind `running`, to hand back when a drain deadline passes. */
  inFlight: Set<InFlight>;
  stopped: boolean;
}

interface InFlight {
  durable: Durable;
  pending: Pending;
  controller: AbortController;
  handedBack: boolean;
  requeued?: boolean;
}

/** One durable consumer: its backlog and the subscribers that share it. */
interface Durable {
  type: string;
  backlog: Pending[];
  subscribers: Subscriber[];
  nextSubscriber: number;
}

export class InProcessBus implements EventBus {
  private readonly durables = new Map<string, Durable>();
  private readonly recentIds = new Map<string, number>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private readonly subscriptions = new Set<Subscription>();
  private closed = false;
  private readonly retryDelayMs: (attempt: number) => number;
  private readonly duplicateWindowMs: number;

  constructor(private readonly options: InProcessBusOptions = {}) {
    this.retryDelayMs = options.retryDelayMs ?? ((attempt) => Math.min(100 * 2 ** (attempt - 1), 5000));
    this.duplicateWindowMs = options.duplicateWindowMs ?? 120_000;
  }

  async publish(event: CloudEventV1<unknown>): Promise<void> {
    if (this.closed) throw new Error('event bus is closed');
    const message = toNatsMessage(event);
    if (this.isDuplicate(event.id)) return;
    for (const durable of this.durables.values()) {
      if (durable.type !== event.type) continue;
      durable.backlog.push({ message, attempt: 1 });
      this.dispatchSoon(durable);
    }
  }

  async subscribe(options: SubscribeOptions, handler: EventHandler): Promise<Subscription> {
    if (this.closed) throw new Error('event bus is closed');
    const names = options.types.map((type, index) => consumerNameFor(options.durable, options.types, index));
    for (const [index, name] of names.entries()) {
      const existing = this.durables.get(name);
      if (existing && existing.type !== options.types[index]) {
        throw new Error(`durable ${name} consumes ${existing.type}, not ${options.types[index]}; use another durable name`);
      }
    }
    // One subscriber per type, each with its own concurrency, as each type is its own JetStream consumer.
    const joined = names.map((name, index) => {
      let durable = this.durables.get(name);
      if (!durable) {
        durable = { type: options.types[index], backlog: [], subscribers: [], nextSubscriber: 0 };
        this.durables.set(name, durable);
      }
      const subscriber: Subscriber = { options, handler, concurrency: Math.max(1, options.concurrency ?? 1), running: new Set(), inFlight: new Set(), stopped: false };
      durable.subscribers.push(subscriber);
      this.dispatchSoon(durable);
      return { durable, subscriber };
    });
    const subscription: Subscription = {
      stop: async (stopOptions: StopOptions = {}) => {
        for (const { durable, subscriber } of joined) {
          subscriber.stopped = true;
          durable.subscribers = durable.subscribers.filter((s) => s !== subscriber);
        }
        this.subscriptions.delete(subscription);
        const finished = Promise.allSettled(joined.flatMap(({ subscriber }) => [...subscriber.running]));
        if (stopOptions.deadlineMs === undefined) return void (await finished);
        if (await settlesWithin(finished, stopOptions.deadlineMs)) return;
        // Past the deadline: abort what still runs; each is offered to the durable's other
        // subscribers once its handler has cleaned up (handle), or after the clean-up wait.
        const handedBack: InFlight[] = [];
        for (const { subscriber } of joined) {
          for (const entry of subscriber.inFlight) {
            entry.handedBack = true;
            entry.controller.abort(new HandedBack(stopOptions.deadlineMs));
            handedBack.push(entry);
          }
        }
        await settlesWithin(finished, HAND_BACK_CLEANUP_MS);
        for (const entry of handedBack) this.handBack(entry);
      },
    };
    this.subscriptions.add(subscription);
    return subscription;
  }

  async close(options?: StopOptions): Promise<void> {
    this.closed = true;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    await Promise.all([...this.subscriptions].map((s) => s.stop(options)));
  }

  private isDuplicate(id: string): boolean {
    const now = Date.now();
    for (const [seen, at] of this.recentIds) {
      if (now - at <= this.duplicateWindowMs) break; // insertion order = time order
      this.recentIds.delete(seen);
    }
    if (this.recentIds.has(id)) return true;
    this.recentIds.set(id, now);
    return false;
  }

  /** Delivery never happens inside publish(): the publisher's own work finishes first. */
  private dispatchSoon(durable: Durable): void {
    setImmediate(() => this.dispatch(durable));
  }

  private dispatch(durable: Durable): void {
    while (durable.backlog.length > 0) {
      const subscriber = this.freeSubscriber(durable);
      if (!subscriber) return;
      this.deliver(durable, subscriber, durable.backlog.shift()!);
    }
  }

  /** Round robin over subscribers with spare capacity, so replicas share the work. */
  private freeSubscriber(durable: Durable): Subscriber | undefined {
    const count = durable.subscribers.length;
    for (let i = 0; i < count; i++) {
      const candidate = durable.subscribers[(durable.nextSubscriber + i) % count];
      if (!candidate.stopped && candidate.running.size < candidate.concurrency) {
        durable.nextSubscriber = (durable.nextSubscriber + i + 1) % count;
        return candidate;
      }
    }
    return undefined;
  }

  private deliver(durable: Durable, subscriber: Subscriber, pending: Pending): void {
    const run = this.handle(durable, subscriber, pending).finally(() => {
      subscriber.running.delete(run);
      this.dispatchSoon(durable);
    });
    subscriber.running.add(run);
  }

  private async handle(durable: Durable, subscriber: Subscriber, pending: Pending): Promise<void> {
    const event = fromNatsMessage(pending.message);
    const entry: InFlight = { durable, pending, controller: new AbortController(), handedBack: false };
    const delivery: Delivery = { attempt: pending.attempt, working: () => undefined, signal: entry.controller.signal };
    subscriber.inFlight.add(entry);
    try {
      await subscriber.handler(event, delivery);
    } catch (error) {
      if (entry.handedBack) return this.handBack(entry);
      if (error instanceof RetryLater) {
        this.retryLater(durable, pending, error.delayMs);
        return;
      }
      const maxDeliver = subscriber.options.maxDeliver ?? DEFAULT_MAX_DELIVER;
      if (pending.attempt >= maxDeliver) {
        await this.giveUp(subscriber, event, error);
      } else {
        this.retryLater(durable, { message: pending.message, attempt: pending.attempt + 1 });
      }
    } finally {
      subscriber.inFlight.delete(entry);
    }
  }

  /** Offers a handed-back delivery to the durable's other subscribers (once), unless the bus is closed. */
  private handBack(entry: InFlight): void {
    if (entry.requeued || this.closed) return;
    entry.requeued = true;
    entry.durable.backlog.unshift(entry.pending);
    this.dispatchSoon(entry.durable);
  }

  private async giveUp(subscriber: Subscriber, event: CloudEvent<unknown>, error: unknown): Promise<void> {
    try {
      await subscriber.options.onGiveUp?.(event, error);
    } catch (giveUpError) {
      // A failed give-up leaves a task hanging: never swallow it silently.
      const log = this.options.log ?? { error: (obj: object, msg?: string) => console.error(msg, obj) };
      log.error({ err: giveUpError, eventId: event.id, type: event.type }, 'onGiveUp failed');
    }
  }

  private retryLater(durable: Durable, pending: Pending, delayMs = this.retryDelayMs(pending.attempt - 1)): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      durable.backlog.push(pending);
      this.dispatch(durable);
    }, delayMs);
    this.retryTimers.add(timer);
  }
}
