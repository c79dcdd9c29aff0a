/**
 * The event bus over NATS JetStream. One file-backed stream holds every pipeline event; each
 * (durable, type) is a durable pull consumer with explicit acks, so replicas of a stage share
 * the work, un-acked events survive a crash, and the retry limit is enforced by the server.
 *
 * A worker pulls one message at a time (no prefetch): a replica busy converting a large image
 * must not sit on events another replica could take.
 */
import { eventLogIds } from './log-fields';
import type { CloudEvent, CloudEventV1 } from 'cloudevents';
import {
  AckPolicy,
  DeliverPolicy,
  StorageType,
  connect,
  headers as natsHeaders,
  nanos,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type MsgHdrs,
  type NatsConnection,
} from 'nats';
import { HAND_BACK_CLEANUP_MS, HandedBack, RetryLater, settlesWithin, type Delivery, type EventBus, type EventHandler, type StopOptions, type SubscribeOptions, type Subscription } from './bus';
import { fromNatsMessage, toNatsMessage } from './nats-binding';
import {
  DEAD_LETTER_HEADERS,
  DEAD_LETTER_STREAM,
  DEAD_LETTER_SUBJECTS,
  STREAM_NAME,
  STREAM_SUBJECTS,
  consumerNameFor,
  deadLetterSubjectFor,
  subjectFor,
} from './subjects';

export interface JetStreamBusOptions {
  servers: string | string[];
  stream?: string;
  /** Delay before a rejected message is redelivered, by the attempt that failed (1-based). */
  retryDelayMs?: (attempt: number) => number;
  /** How long one pull request waits for a message; bounds how long an idle stop() takes. */
  pullExpiresMs?: number;
  /** Connection name shown by the server (monitoring). */
  name?: string;
  log?: BusLog;
}

interface BusLog {
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const DEFAULT_MAX_DELIVER = 5;
const DEFAULT_ACK_WAIT_MS = 30_000;
const DUPLICATE_WINDOW_MS = 120_000;
const consoleLog: BusLog = {
  warn: (obj, msg) => console.warn(msg ?? '', obj),
  error: (obj, msg) => console.error(msg ?? '', obj),
};

export class JetStreamBus implements EventBus {
  private readonly subscriptions = new Set<Subscription>();
  private readonly retryDelayMs: (attempt: number) => number;
  private readonly pullExpiresMs: number;
  private readonly log: BusLog;
  private disconnected = false;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly stream: string,
    options: JetStreamBusOptions,
  ) {
    this.retryDelayMs = options.retryDelayMs ?? ((attempt) => Math.min(1000 * 2 ** (attempt - 1), 60_000));
    this.pullExpiresMs = Math.max(1000, options.pullExpiresMs ?? 5000);
    this.log = options.log ?? consoleLog;
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'disconnect') this.disconnected = true;
        else if (status.type === 'reconnect') this.disconnected = false;
      }
    })().catch(() => undefined);
  }

  /** Readiness: resolves when the connection is up and the server answers a ping. */
  async checkConnection(): Promise<void> {
    if (this.nc.isClosed()) throw new Error('the NATS connection is closed');
    if (this.disconnected) throw new Error('disconnected from NATS; reconnecting');
    await this.nc.flush();
  }

  /** Connects and makes sure the stream exists. */
  static async connect(options: JetStreamBusOptions): Promise<JetStreamBus> {
    const nc = await connect({ servers: options.servers, name: options.name ?? 'imaging', maxReconnectAttempts: -1 });
    try {
      const jsm = await nc.jetstreamManager();
      const stream = options.stream ?? STREAM_NAME;
      await ensureStream(jsm, stream);
      await ensureStream(jsm, DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECTS);
      return new JetStreamBus(nc, nc.jetstream(), jsm, stream, options);
    } catch (error) {
      await nc.close();
      throw error;
    }
  }

  /** The event id is the JetStream message id, so a re-published event is stored once. */
  async publish(event: CloudEventV1<unknown>): Promise<void> {
    const message = toNatsMessage(event);
    const headers = natsHeaders();
    for (const [name, value] of Object.entries(message.headers)) headers.set(name, value);
    await this.js.publish(message.subject, message.data, { msgID: event.id, headers, expect: { streamName: this.stream } });
  }

  /**
   * Copies an event given up on into the dead-letter stream with why and where, so an operator
   * can inspect and replay it (`imaging events list-dead`, `imaging events replay`). Once per
   * event and stage: the copy's message id de-duplicates the two give-up paths.
   */
  async deadLetter(durable: string, event: CloudEventV1<unknown>, reason: unknown): Promise<void> {
    const message = toNatsMessage(event);
    const headers = natsHeaders();
    for (const [name, value] of Object.entries(message.headers)) headers.set(name, value);
    const text = (reason instanceof Error ? reason.message : String(reason)).replace(/[\r\n]+/g, ' ').slice(0, 1000);
    headers.set(DEAD_LETTER_HEADERS.stage, durable);
    headers.set(DEAD_LETTER_HEADERS.reason, text || 'unknown');
    headers.set(DEAD_LETTER_HEADERS.at, new Date().toISOString());
    await this.js.publish(deadLetterSubjectFor(durable), message.data, { msgID: `dead:${durable}:${event.id}`, headers, expect: { streamName: DEAD_LETTER_STREAM } });
  }

  async subscribe(subscribed: SubscribeOptions, handler: EventHandler): Promise<Subscription> {
    // Every give-up lands in the dead-letter stream first, then the subscriber hears of it.
    const options: SubscribeOptions = {
      ...subscribed,
      onGiveUp: async (event, error) => {
        try {
          await this.deadLetter(subscribed.durable, event, error);
        } catch (deadError) {
          this.log.error({ err: deadError, ...eventLogIds(event), stage: subscribed.durable }, 'could not copy a given-up event to the dead-letter stream');
        }
        await subscribed.onGiveUp?.(event, error);
      },
    };
    const settings = {
      maxDeliver: options.maxDeliver ?? DEFAULT_MAX_DELIVER,
      ackWaitMs: options.ackWaitMs ?? DEFAULT_ACK_WAIT_MS,
    };
    const names = options.types.map((type, index) => consumerNameFor(options.durable, options.types, index));
    for (const [index, type] of options.types.entries()) {
      await ensureConsumer(this.jsm, this.stream, names[index], subjectFor(type), settings);
    }
    const loops = await Promise.all(
      names.map(async (name) => {
        const consumer = await this.js.consumers.get(this.stream, name);
        return new PullLoop(name, consumer, options, settings.maxDeliver, handler, this.retryDelayMs, this.pullExpiresMs, this.log);
      }),
    );
    for (const loop of loops) loop.start(Math.max(1, options.concurrency ?? 1));
    const watchers = options.onGiveUp ? names.map((name) => this.watchExhaustedDeliveries(name, options.onGiveUp!)) : [];
    const subscription: Subscription = {
      stop: async (stopOptions) => {
        this.subscriptions.delete(subscription);
        for (const watcher of watchers) watcher.unsubscribe();
        await Promise.all(loops.map((loop) => loop.stop(stopOptions)));
      },
    };
    this.subscriptions.add(subscription);
    return subscription;
  }

  /**
   * A handler that crashes, or outlives ack wait without working(), never rejects: the server
   * just stops redelivering after max_deliver and says so in an advisory. Turning that advisory
   * into onGiveUp is what makes a poison task fail instead of hang. The queue group makes one
   * replica of the stage handle it.
   */
  private watchExhaustedDeliveries(consumer: string, onGiveUp: NonNullable<SubscribeOptions['onGiveUp']>) {
    const subject = `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${this.stream}.${consumer}`;
    return this.nc.subscribe(subject, {
      queue: `${consumer}-give-up`,
      callback: (error, advisory) => {
        if (error) return;
        void (async () => {
          const { stream_seq: seq, deliveries } = JSON.parse(new TextDecoder().decode(advisory.data)) as { stream_seq: number; deliveries: number };
          let event: CloudEvent<unknown>;
          try {
            const stored = await this.jsm.streams.getMessage(this.stream, { seq });
            event = fromNatsMessage({ headers: headerRecord(stored.header), data: stored.data });
          } catch (readError) {
            this.log.error({ err: readError, consumer, seq }, 'delivery attempts exhausted for a message that cannot be read back');
            return;
          }
          const reason = new Error(`no outcome after ${deliveries} deliveries: the handler crashed or ran past the ack wait each time`);
          await onGiveUp(event, reason);
        })().catch((giveUpError) => this.log.error({ err: giveUpError, consumer }, 'onGiveUp failed'));
      },
    });
  }

  /**
   * Stops every subscription (in-flight handlers finish and ack, or are handed back past the
   * deadline), then drains the connection, which delivers the last acks and naks.
   */
  async close(options?: StopOptions): Promise<void> {
    await Promise.all([...this.subscriptions].map((s) => s.stop(options)));
    if (!this.nc.isClosed()) await this.nc.drain();
  }
}

async function ensureStream(jsm: JetStreamManager, stream: string, subjects: string[] = STREAM_SUBJECTS): Promise<void> {
  const config = { name: stream, subjects, storage: StorageType.File, duplicate_window: nanos(DUPLICATE_WINDOW_MS) };
  try {
    await jsm.streams.info(stream);
    return;
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  try {
    await jsm.streams.add(config);
  } catch (error) {
    // Another replica may have created it between our look-up and our add.
    await jsm.streams.info(stream).catch(() => Promise.reject(error));
  }
}

/** Creates the durable consumer, or brings an existing one to the requested limits. */
async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  name: string,
  filterSubject: string,
  settings: { maxDeliver: number; ackWaitMs: number },
): Promise<void> {
  const limits = { ack_wait: nanos(settings.ackWaitMs), max_deliver: settings.maxDeliver };
  let existing;
  try {
    existing = await jsm.consumers.info(stream, name);
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  if (!existing) {
    try {
      await jsm.consumers.add(stream, {
        durable_name: name,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: filterSubject,
        ...limits,
      });
      return;
    } catch (error) {
      existing = await jsm.consumers.info(stream, name).catch(() => Promise.reject(error));
    }
  }
  if (existing.config.filter_subject !== filterSubject) {
    throw new Error(`consumer ${name} on stream ${stream} filters ${existing.config.filter_subject}, not ${filterSubject}; delete it or use another durable name`);
  }
  if (existing.config.ack_wait !== limits.ack_wait || existing.config.max_deliver !== limits.max_deliver) {
    await jsm.consumers.update(stream, name, limits);
  }
}

function isNotFound(error: unknown): boolean {
  const e = error as { code?: string; api_error?: { err_code?: number }; message?: string };
  return e?.code === '404' || e?.api_error?.err_code === 10059 || e?.api_error?.err_code === 10014 || /not found/i.test(e?.message ?? '');
}

type PullConsumer = Awaited<ReturnType<JetStreamClient['consumers']['get']>>;

/** A delivery a handler is working on; handed back when the drain deadline passes. */
interface InFlight {
  message: JsMsg;
  controller: AbortController;
  handedBack: boolean;
  nakked?: boolean;
}

/** Offers a handed-back delivery to another consumer at once (once). */
function handBack(entry: InFlight): void {
  if (entry.nakked) return;
  entry.nakked = true;
  entry.message.nak();
}

/** Workers pulling from one durable consumer and settling each message with the handler's outcome. */
class PullLoop {
  private stopping = false;
  private readonly pulls = new Set<ConsumerMessages>();
  private readonly inFlight = new Set<InFlight>();
  private workers: Promise<void>[] = [];

  constructor(
    private readonly name: string,
    private readonly consumer: PullConsumer,
    private readonly options: SubscribeOptions,
    private readonly maxDeliver: number,
    private readonly handler: EventHandler,
    private readonly retryDelayMs: (attempt: number) => number,
    private readonly pullExpiresMs: number,
    private readonly log: BusLog,
  ) {}

  start(workers: number): void {
    for (let i = 0; i < workers; i++) this.workers.push(this.work());
  }

  /**
   * Ends outstanding pulls and lets in-flight handlers finish and settle their messages. Past
   * `deadlineMs` each one still running is handed back: its handler's signal is aborted so that
   * it cleans up, and the message is nak'ed without delay (another replica takes it now, not
   * after the ack wait) once the handler ends, or after a short clean-up wait regardless.
   */
  async stop(options: StopOptions = {}): Promise<void> {
    this.stopping = true;
    for (const pull of this.pulls) pull.stop();
    const finished = Promise.all(this.workers);
    if (options.deadlineMs === undefined) return void (await finished);
    if (await settlesWithin(finished, options.deadlineMs)) return;
    const handedBack = [...this.inFlight];
    for (const entry of handedBack) {
      entry.handedBack = true;
      entry.controller.abort(new HandedBack(options.deadlineMs));
      this.log.warn({ consumer: this.name, seq: entry.message.seq }, 'drain deadline passed: delivery handed back to another replica');
    }
    await settlesWithin(finished, HAND_BACK_CLEANUP_MS);
    // Handlers that cleaned up nak'ed as they ended (settle); the rest are nak'ed now regardless.
    for (const entry of handedBack) handBack(entry);
  }

  private async work(): Promise<void> {
    while (!this.stopping) {
      let pull: ConsumerMessages;
      try {
        pull = await this.consumer.fetch({ max_messages: 1, expires: this.pullExpiresMs });
      } catch (error) {
        if (this.stopping) return;
        this.log.warn({ err: error, consumer: this.name }, 'pull request failed; retrying');
        await sleep(1000);
        continue;
      }
      this.pulls.add(pull);
      if (this.stopping) pull.stop();
      try {
        for await (const message of pull) await this.settle(message);
      } catch (error) {
        if (!this.stopping) {
          this.log.warn({ err: error, consumer: this.name }, 'pull ended with an error; retrying');
          await sleep(1000);
        }
      } finally {
        this.pulls.delete(pull);
      }
    }
  }

  private async settle(message: JsMsg): Promise<void> {
    let event: CloudEvent<unknown>;
    try {
      event = fromNatsMessage({ headers: headerRecord(message.headers), data: message.data });
    } catch (error) {
      // Redelivering a message we cannot read would only fail again.
      this.log.error({ err: error, subject: message.subject, seq: message.seq }, 'terminating a message that is not a valid CloudEvent');
      message.term(); // no reason text: nats-server 2.9 does not understand '+TERM <reason>'
      return;
    }
    if (this.stopping) {
      // Pulled as the loop began to stop: not started, so handed straight back.
      message.nak();
      return;
    }
    const attempt = message.info.redeliveryCount;
    const entry: InFlight = { message, controller: new AbortController(), handedBack: false };
    const delivery: Delivery = { attempt, working: () => message.working(), signal: entry.controller.signal };
    this.inFlight.add(entry);
    try {
      await this.handler(event, delivery);
    } catch (error) {
      // Handed back: not a failure of the event. Nak'ed once the handler has cleaned up (its
      // lease released), so the replica that takes it over finds the task free.
      if (entry.handedBack) return handBack(entry);
      if (error instanceof RetryLater) {
        // Not a failure: offered again later. Past the last delivery the sweeper re-drives the task.
        if (attempt >= this.maxDeliver) message.term();
        else message.nak(error.delayMs);
        return;
      }
      if (attempt >= this.maxDeliver) {
        await this.giveUp(event, error);
        message.term();
      } else {
        message.nak(this.retryDelayMs(attempt));
      }
      return;
    } finally {
      this.inFlight.delete(entry);
    }
    // A handed-back handler that finished anyway did the work: acked like any other.
    if (entry.nakked) return;
    try {
      // Wait for the server to confirm, so a stop() that follows never loses the ack.
      await message.ackAck();
    } catch (error) {
      this.log.warn({ err: error, ...eventLogIds(event), stage: this.name }, 'ack not confirmed; the event may be delivered again');
    }
  }

  private async giveUp(event: CloudEvent<unknown>, error: unknown): Promise<void> {
    try {
      await this.options.onGiveUp?.(event, error);
    } catch (giveUpError) {
      this.log.error({ err: giveUpError, ...eventLogIds(event), stage: this.name, type: event.type }, 'onGiveUp failed');
    }
  }
}

function headerRecord(headers: MsgHdrs | undefined): Record<string, string> {
  const record: Record<string, string> = {};
  if (!headers) return record;
  for (const name of headers.keys()) record[name] = headers.get(name);
  return record;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
