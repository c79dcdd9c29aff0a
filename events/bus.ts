import type { CloudEvent } from 'cloudevents';

/** What a consumer may do with one delivery while it works on it (JetStream semantics). */
export interface Delivery {
  /**
   * 1 for the first delivery, more on redelivery: the server's count. Under load JetStream's is
   * approximate (a delivery to a pull that expired may count, or be taken back), so use it for
   * back-off and logs, never to decide that work was or was not done before.
   */
  readonly attempt: number;
  /** Keeps the delivery alive while long work goes on (JetStream in-progress ack). */
  working(): void;
  /**
   * Aborted when the consumer hands the delivery back unfinished (its drain deadline passed on
   * shutdown): the handler stops, removes what this attempt wrote, and rejects. The event is
   * offered to another consumer at once, whatever the handler's outcome.
   */
  readonly signal?: AbortSignal;
}

/** How a subscription or bus stops. */
export interface StopOptions {
  /**
   * How long deliveries in flight may go on before they are handed back (aborted, and offered to
   * another consumer at once). Without it stop() waits for them however long they take.
   */
  deadlineMs?: number;
}

/** After the drain deadline, how long handed-back handlers get to clean up before stop() resolves anyway. */
export const HAND_BACK_CLEANUP_MS = 2000;

/** The reason a handed-back delivery's signal carries. */
export class HandedBack extends Error {
  constructor(deadlineMs: number) {
    super(`handed back: still running ${deadlineMs} ms after the consumer began to stop`);
    this.name = 'HandedBack';
  }
}

/** Resolves true if `work` settles within `ms`, false if not (without waiting longer). */
export async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([work.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Thrown by a handler that cannot act on an event yet, through no fault (another replica holds
 * the task): the bus offers the event again after `delayMs`, and never counts it as a failure
 * that leads to giving up.
 */
export class RetryLater extends Error {
  constructor(
    readonly delayMs: number,
    message: string,
  ) {
    super(message);
    this.name = 'RetryLater';
  }
}

export type EventHandler = (event: CloudEvent<unknown>, delivery: Delivery) => Promise<void>;

export interface SubscribeOptions {
  /** Durable consumer name, one per stage: replicas of a stage share it. */
  durable: string;
  /** Event types the consumer receives. */
  types: string[];
  /** Redeliveries before a message is terminated (poison message). */
  maxDeliver?: number;
  /** How long a delivery may go without ack or working() before it is redelivered. */
  ackWaitMs?: number;
  /** How many deliveries this subscriber handles at once (default 1). */
  concurrency?: number;
  /** Called once when a message is given up on after maxDeliver attempts. */
  onGiveUp?: (event: CloudEvent<unknown>, error: unknown) => Promise<void>;
}

export interface Subscription {
  /** Stops taking deliveries and lets those in flight finish, handing them back past the deadline. */
  stop(options?: StopOptions): Promise<void>;
}

/**
 * The event bus contract: the NATS JetStream bus and the in-process bus both implement it.
 * A handler that resolves acks the event; one that rejects gets it redelivered (up to maxDeliver).
 */
export interface EventBus {
  publish(event: CloudEvent<unknown>): Promise<void>;
  subscribe(options: SubscribeOptions, handler: EventHandler): Promise<Subscription>;
  close(options?: StopOptions): Promise<void>;
}
