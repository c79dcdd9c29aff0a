/**
 * The event bus contract, run against the JetStream bus (real nats-server) and the in-process
 * bus; then the behaviours only JetStream has (ack wait, crash recovery, poison messages).
 */
import type { CloudEvent } from 'cloudevents';
import { connect, type NatsConnection } from 'nats';
import type { Delivery, EventBus, SubscribeOptions, Subscription } from '../../events/bus';
import { InProcessBus } from '../../events/in-process-bus';
import { JetStreamBus } from '../../events/jetstream-bus';
import { makeEvent } from '../../events/make-event';
import { STREAM_NAME } from '../../events/subjects';
import { EVENT_TYPES } from '../../events/types';
import { startNatsServer, type RunningNatsServer } from '../helpers/nats-server';
import { waitUntil } from '../helpers/wait-until';

const FAST_RETRY = () => 100;
const quietLog = { warn: () => undefined, error: () => undefined };

let nats: RunningNatsServer;
let admin: NatsConnection;

beforeAll(async () => {
  nats = await startNatsServer();
  admin = await connect({ servers: nats.url });
});

afterAll(async () => {
  await admin?.close();
  await nats?.stop();
});

/** Every test starts from an empty stream: consumers deliver the whole stream, earlier tests included. */
async function freshJetStreamBus(): Promise<JetStreamBus> {
  const jsm = await admin.jetstreamManager();
  await jsm.streams.delete(STREAM_NAME).catch(() => undefined);
  return JetStreamBus.connect({ servers: nats.url, retryDelayMs: FAST_RETRY, pullExpiresMs: 1000, log: quietLog });
}

async function anotherJetStreamBus(): Promise<JetStreamBus> {
  return JetStreamBus.connect({ servers: nats.url, retryDelayMs: FAST_RETRY, pullExpiresMs: 1000, log: quietLog });
}

function manifestReceived(taskId: string): CloudEvent<unknown> {
  return makeEvent(EVENT_TYPES.manifestReceived, { taskId, accountId: '123456789012' }, 'test') as CloudEvent<unknown>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface BusUnderTest {
  name: string;
  /** A fresh, empty bus. */
  fresh(): Promise<EventBus>;
  /** A second handle on the same bus (another replica); the in-process bus has only one. */
  replica(first: EventBus): Promise<EventBus>;
}

const buses: BusUnderTest[] = [
  { name: 'JetStreamBus', fresh: freshJetStreamBus, replica: anotherJetStreamBus },
  { name: 'InProcessBus', fresh: async () => new InProcessBus({ retryDelayMs: FAST_RETRY }), replica: async (first) => first },
];

describe.each(buses)('$name: the EventBus contract', ({ fresh, replica }) => {
  const opened: EventBus[] = [];
  const subscriptions: Subscription[] = [];

  async function open(bus: Promise<EventBus>): Promise<EventBus> {
    const b = await bus;
    if (!opened.includes(b)) opened.push(b);
    return b;
  }

  async function subscribe(bus: EventBus, options: SubscribeOptions, handler: (e: CloudEvent<unknown>, d: Delivery) => Promise<void>) {
    const s = await bus.subscribe(options, handler);
    subscriptions.push(s);
    return s;
  }

  afterEach(async () => {
    await Promise.all(subscriptions.splice(0).map((s) => s.stop()));
    await Promise.all(opened.splice(0).map((b) => b.close()));
  });

  test('delivers a published event to a subscriber of its type, intact, on its first attempt', async () => {
    const bus = await open(fresh());
    const received: { event: CloudEvent<unknown>; attempt: number }[] = [];
    await subscribe(bus, { durable: 'decrypt', types: [EVENT_TYPES.manifestReceived] }, async (event, delivery) => {
      received.push({ event, attempt: delivery.attempt });
    });
    const other = makeEvent(EVENT_TYPES.validated, { taskId: 'import-vol-00000000', accountId: '1' }, 'test');
    const sent = manifestReceived('import-vol-11111111');
    await bus.publish(other as CloudEvent<unknown>);
    await bus.publish(sent);

    await waitUntil(() => received.length >= 1, { what: 'delivery', timeoutMs: 10_000, everyMs: 20 });
    await sleep(300);
    expect(received).toHaveLength(1);
    const [{ event, attempt }] = received;
    expect(attempt).toBe(1);
    expect(event.id).toBe(sent.id);
    expect(event.type).toBe(sent.type);
    expect(event.source).toBe(sent.source);
    expect(event.subject).toBe('import-vol-11111111');
    expect(event.time).toBe(sent.time);
    expect(event.data).toEqual({ taskId: 'import-vol-11111111', accountId: '123456789012' });
  });

  test('publish does not wait for the handler', async () => {
    const bus = await open(fresh());
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started = false;
    let finished = false;
    await subscribe(bus, { durable: 'decrypt', types: [EVENT_TYPES.manifestReceived] }, async () => {
      started = true;
      await gate;
      finished = true;
    });
    await bus.publish(manifestReceived('import-vol-22222222'));
    await waitUntil(() => started, { what: 'delivery', timeoutMs: 10_000, everyMs: 20 });
    expect(finished).toBe(false);
    release();
    await waitUntil(() => finished, { what: 'handler end', timeoutMs: 10_000, everyMs: 20 });
  });

  test('competing subscribers of one durable get each event exactly once; another durable gets every event', async () => {
    const bus = await open(fresh());
    const second = await open(replica(bus));
    const seen = new Map<string, number>();
    const bySubscriber = [0, 0];
    const audit: string[] = [];
    const count = (who: number) => async (event: CloudEvent<unknown>) => {
      await sleep(10);
      bySubscriber[who]++;
      seen.set(event.id, (seen.get(event.id) ?? 0) + 1);
    };
    await subscribe(bus, { durable: 'convert', types: [EVENT_TYPES.manifestReceived] }, count(0));
    await subscribe(second, { durable: 'convert', types: [EVENT_TYPES.manifestReceived] }, count(1));
    await subscribe(bus, { durable: 'audit', types: [EVENT_TYPES.manifestReceived] }, async (event) => {
      audit.push(event.id);
    });

    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const event = manifestReceived(`import-vol-${String(i).padStart(8, '0')}`);
      ids.push(event.id);
      await bus.publish(event);
    }
    await waitUntil(() => seen.size === 20 && audit.length === 20, { what: 'all deliveries', timeoutMs: 15_000, everyMs: 20 });
    await sleep(500);
    expect([...seen.keys()].sort()).toEqual([...ids].sort());
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(bySubscriber[0] + bySubscriber[1]).toBe(20);
    expect([...audit].sort()).toEqual([...ids].sort());
  });

  test('a rejected event is redelivered with attempt 2, and acked once the handler succeeds', async () => {
    const bus = await open(fresh());
    const attempts: number[] = [];
    await subscribe(bus, { durable: 'validate', types: [EVENT_TYPES.manifestReceived], maxDeliver: 5 }, async (_event, delivery) => {
      attempts.push(delivery.attempt);
      if (delivery.attempt === 1) throw new Error('transient: object storage unavailable');
    });
    await bus.publish(manifestReceived('import-vol-33333333'));
    await waitUntil(() => attempts.length >= 2, { what: 'redelivery', timeoutMs: 10_000, everyMs: 20 });
    await sleep(600);
    expect(attempts).toEqual([1, 2]);
  });

  test('after maxDeliver rejections onGiveUp is called once, with the event and the last error', async () => {
    const bus = await open(fresh());
    const attempts: number[] = [];
    const gaveUp: { id: string; error: unknown }[] = [];
    const sent = manifestReceived('import-vol-44444444');
    await subscribe(
      bus,
      {
        durable: 'register',
        types: [EVENT_TYPES.manifestReceived],
        maxDeliver: 3,
        onGiveUp: async (event, error) => {
          gaveUp.push({ id: event.id, error });
        },
      },
      async (_event, delivery) => {
        attempts.push(delivery.attempt);
        throw new Error(`broken on attempt ${delivery.attempt}`);
      },
    );
    await bus.publish(sent);
    await waitUntil(() => gaveUp.length >= 1, { what: 'give-up', timeoutMs: 10_000, everyMs: 20 });
    await sleep(800);
    expect(attempts).toEqual([1, 2, 3]);
    expect(gaveUp).toHaveLength(1);
    expect(gaveUp[0].id).toBe(sent.id);
    expect((gaveUp[0].error as Error).message).toBe('broken on attempt 3');
  });

  test('an event published twice with the same id is delivered once', async () => {
    const bus = await open(fresh());
    const received: string[] = [];
    await subscribe(bus, { durable: 'decrypt', types: [EVENT_TYPES.manifestReceived] }, async (event) => {
      received.push(event.id);
    });
    const event = manifestReceived('import-vol-55555555');
    await bus.publish(event);
    await bus.publish(event);
    await waitUntil(() => received.length >= 1, { what: 'delivery', timeoutMs: 10_000, everyMs: 20 });
    await sleep(500);
    expect(received).toEqual([event.id]);
  });

  test('one subscription may consume several types', async () => {
    const bus = await open(fresh());
    const types: string[] = [];
    await subscribe(bus, { durable: 'watcher', types: [EVENT_TYPES.manifestReceived, EVENT_TYPES.validated] }, async (event) => {
      types.push(event.type);
    });
    await bus.publish(manifestReceived('import-vol-66666666'));
    await bus.publish(makeEvent(EVENT_TYPES.validated, { taskId: 'import-vol-66666666', accountId: '1' }, 'test') as CloudEvent<unknown>);
    await waitUntil(() => types.length >= 2, { what: 'both deliveries', timeoutMs: 10_000, everyMs: 20 });
    expect(types.sort()).toEqual([EVENT_TYPES.manifestReceived, EVENT_TYPES.validated].sort());
  });

  test('a slow event of one type does not hold back a subscription\'s other type', async () => {
    const bus = await open(fresh());
    const done: string[] = [];
    await subscribe(bus, { durable: 'watcher', types: [EVENT_TYPES.manifestReceived, EVENT_TYPES.validated] }, async (event) => {
      if (event.type === EVENT_TYPES.manifestReceived) await sleep(300);
      done.push(event.type);
    });
    await bus.publish(manifestReceived('import-vol-66666667'));
    await bus.publish(makeEvent(EVENT_TYPES.validated, { taskId: 'import-vol-66666667', accountId: '1' }, 'test') as CloudEvent<unknown>);
    await waitUntil(() => done.length >= 2, { what: 'both deliveries', timeoutMs: 5_000, everyMs: 20 });
    expect(done).toEqual([EVENT_TYPES.validated, EVENT_TYPES.manifestReceived]);
  });

  test('concurrency lets one subscriber work on several events at once', async () => {
    const bus = await open(fresh());
    let running = 0;
    let peak = 0;
    let done = 0;
    await subscribe(bus, { durable: 'convert', types: [EVENT_TYPES.manifestReceived], concurrency: 3 }, async () => {
      running++;
      peak = Math.max(peak, running);
      await sleep(300);
      running--;
      done++;
    });
    for (let i = 0; i < 6; i++) await bus.publish(manifestReceived(`import-vol-7777777${i}`));
    await waitUntil(() => done === 6, { what: 'six deliveries', timeoutMs: 10_000, everyMs: 20 });
    expect(peak).toBeGreaterThan(1);
    expect(peak).toBeLessThanOrEqual(3);
  });

  test('stop() waits for the in-flight handler; a durable resumes where it stopped', async () => {
    const bus = await open(fresh());
    const first: string[] = [];
    let finished = false;
    const subscription = await bus.subscribe({ durable: 'decrypt', types: [EVENT_TYPES.manifestReceived] }, async (event) => {
      first.push(event.id);
      await sleep(400);
      finished = true;
    });
    const handled = manifestReceived('import-vol-88888888');
    await bus.publish(handled);
    await waitUntil(() => first.length === 1, { what: 'first delivery', timeoutMs: 10_000, everyMs: 20 });
    await subscription.stop();
    expect(finished).toBe(true);

    const whileDown = [manifestReceived('import-vol-88888881'), manifestReceived('import-vol-88888882')];
    for (const event of whileDown) await bus.publish(event);
    await sleep(200);
    expect(first).toEqual([handled.id]);

    const later = await open(replica(bus));
    const resumed: string[] = [];
    await subscribe(later, { durable: 'decrypt', types: [EVENT_TYPES.manifestReceived] }, async (event) => {
      resumed.push(event.id);
    });
    await waitUntil(() => resumed.length >= 2, { what: 'resumed deliveries', timeoutMs: 10_000, everyMs: 20 });
    await sleep(400);
    expect(resumed.sort()).toEqual(whileDown.map((e) => e.id).sort());
  });
});

describe('InProcessBus only', () => {
  test('never runs a handler inside publish()', async () => {
    const bus = new InProcessBus();
    let handled = false;
    await bus.subscribe({ durable: 'decrypt', types: [EVENT_TYPES.manifestReceived] }, async () => {
      handled = true;
    });
    await bus.publish(manifestReceived('import-vol-22222223'));
    expect(handled).toBe(false);
    await waitUntil(() => handled, { what: 'delivery', timeoutMs: 5_000, everyMs: 20 });
    await bus.close();
  });

  test('refuses to reuse a durable name for another type, as JetStream does', async () => {
    const bus = new InProcessBus();
    const first = await bus.subscribe({ durable: 'decrypt', types: [EVENT_TYPES.manifestReceived] }, async () => undefined);
    await expect(bus.subscribe({ durable: 'decrypt', types: [EVENT_TYPES.validated] }, async () => undefined)).rejects.toThrow(/consumes io.imaging.manifest-received/);
    await first.stop();
    await bus.close();
  });

  test('refuses to publish after close()', async () => {
    const bus = new InProcessBus();
    await bus.close();
    await expect(bus.publish(manifestReceived('import-vol-22222224'))).rejects.toThrow(/closed/);
  });
});

describe('JetStreamBus only', () => {
  const opened: EventBus[] = [];
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((b) => b.close()));
  });
  async function open<T extends EventBus>(bus: Promise<T>): Promise<T> {
    const b = await bus;
    opened.push(b);
    return b;
  }

  test('creates a file-backed stream over imaging.> named IMAGING', async () => {
    await open(freshJetStreamBus());
    const info = await (await admin.jetstreamManager()).streams.info(STREAM_NAME);
    expect(info.config.subjects).toEqual(['imaging.>']);
    expect(info.config.storage).toBe('file');
  });

  test('creates one durable pull consumer per type with the requested limits', async () => {
    const bus = await open(freshJetStreamBus());
    const sub = await bus.subscribe(
      { durable: 'watch', types: [EVENT_TYPES.manifestReceived, EVENT_TYPES.validated], maxDeliver: 7, ackWaitMs: 12_000 },
      async () => undefined,
    );
    const jsm = await admin.jetstreamManager();
    const first = await jsm.consumers.info(STREAM_NAME, 'watch-0');
    const second = await jsm.consumers.info(STREAM_NAME, 'watch-1');
    expect(first.config.filter_subject).toBe('imaging.manifest-received');
    expect(second.config.filter_subject).toBe('imaging.validated');
    expect(first.config.max_deliver).toBe(7);
    expect(first.config.ack_wait).toBe(12_000 * 1_000_000);
    expect(first.config.ack_policy).toBe('explicit');
    await sub.stop();

    // A durable name stays bound to its type.
    await expect(bus.subscribe({ durable: 'watch-0', types: [EVENT_TYPES.registered] }, async () => undefined)).rejects.toThrow(/filters imaging.manifest-received/);

    // Subscribing again with other limits updates the existing consumer.
    const again = await bus.subscribe({ durable: 'watch', types: [EVENT_TYPES.manifestReceived, EVENT_TYPES.validated], maxDeliver: 3 }, async () => undefined);
    expect((await jsm.consumers.info(STREAM_NAME, 'watch-0')).config.max_deliver).toBe(3);
    await again.stop();
  });

  test('without working() a handler slower than ack wait sees the event again; with working() it does not', async () => {
    const bus = await open(freshJetStreamBus());
    const lazy: number[] = [];
    const diligent: number[] = [];
    const slowWork = async (attempts: number[], delivery: Delivery, heartbeat: boolean) => {
      attempts.push(delivery.attempt);
      if (delivery.attempt > 1) return;
      for (let i = 0; i < 10; i++) {
        await sleep(250);
        if (heartbeat) delivery.working();
      }
    };
    await bus.subscribe({ durable: 'lazy', types: [EVENT_TYPES.manifestReceived], ackWaitMs: 1000, concurrency: 2 }, (_e, d) => slowWork(lazy, d, false));
    await bus.subscribe({ durable: 'diligent', types: [EVENT_TYPES.manifestReceived], ackWaitMs: 1000, concurrency: 2 }, (_e, d) =>
      slowWork(diligent, d, true),
    );
    await bus.publish(manifestReceived('import-vol-99999999'));
    await sleep(3500);
    // Two deliveries, the second counted 2 (or 1 again when nats-server 2.9 takes the first back, see below).
    expect(lazy).toHaveLength(2);
    expect(lazy[0]).toBe(1);
    expect([1, 2]).toContain(lazy[1]);
    expect(diligent).toEqual([1]);
  });

  test('an event held by a stuck replica goes to another replica after ack wait', async () => {
    const stuckBus = await open(freshJetStreamBus());
    const healthyBus = await open(anotherJetStreamBus());
    let release!: () => void;
    const stuck = new Promise<void>((resolve) => (release = resolve));
    const stuckAttempts: number[] = [];
    const healthyAttempts: number[] = [];
    await stuckBus.subscribe({ durable: 'convert', types: [EVENT_TYPES.manifestReceived], ackWaitMs: 1000 }, async (_e, delivery) => {
      stuckAttempts.push(delivery.attempt);
      await stuck;
    });
    try {
      await stuckBus.publish(manifestReceived('import-vol-aaaaaaaa'));
      await waitUntil(() => stuckAttempts.length === 1, { what: 'first delivery', timeoutMs: 10_000, everyMs: 20 });
      await healthyBus.subscribe({ durable: 'convert', types: [EVENT_TYPES.manifestReceived], ackWaitMs: 1000 }, async (_e, delivery) => {
        healthyAttempts.push(delivery.attempt);
      });
      await waitUntil(() => healthyAttempts.length === 1, { what: 'redelivery to the healthy replica', timeoutMs: 10_000, everyMs: 20 });
      expect(stuckAttempts).toEqual([1]);
      // Attempt 2, as the server counts; under load nats-server 2.9 can take the first delivery
      // back (it believed the pull had expired), and then counts this one as 1 again.
      expect([1, 2]).toContain(healthyAttempts[0]);
    } finally {
      release(); // or closing the stuck bus in afterEach waits for its handler forever
    }
  });

  test('a message that is not a CloudEvent is terminated, not redelivered, and does not block the next one', async () => {
    const bus = await open(freshJetStreamBus());
    const received: string[] = [];
    await bus.subscribe({ durable: 'decrypt', types: [EVENT_TYPES.manifestReceived], ackWaitMs: 1000 }, async (event) => {
      received.push(event.id);
    });
    const js = admin.jetstream();
    await js.publish('imaging.manifest-received', new TextEncoder().encode('{"not":"an event"}'));
    const good = manifestReceived('import-vol-bbbbbbbb');
    await bus.publish(good);
    await waitUntil(() => received.length === 1, { what: 'the good event', timeoutMs: 10_000, everyMs: 20 });
    await sleep(1500);
    expect(received).toEqual([good.id]);
    const info = await (await admin.jetstreamManager()).consumers.info(STREAM_NAME, 'decrypt');
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_redelivered).toBe(0);
    expect(info.delivered.stream_seq).toBe(2);
  });

  test('when every delivery times out (a crashing handler), onGiveUp is still called once', async () => {
    const bus = await open(freshJetStreamBus());
    let release!: () => void;
    const hang = new Promise<void>((resolve) => (release = resolve));
    const attempts: number[] = [];
    const gaveUp: { id: string; error: unknown }[] = [];
    const sent = manifestReceived('import-vol-cccccccc');
    await bus.subscribe(
      {
        durable: 'convert',
        types: [EVENT_TYPES.manifestReceived],
        maxDeliver: 2,
        ackWaitMs: 1000,
        concurrency: 3,
        onGiveUp: async (event, error) => {
          gaveUp.push({ id: event.id, error });
        },
      },
      async (_e, delivery) => {
        attempts.push(delivery.attempt);
        await hang;
      },
    );
    await bus.publish(sent);
    await waitUntil(() => gaveUp.length === 1, { what: 'give-up advisory', timeoutMs: 10_000, everyMs: 20 });
    await sleep(1500);
    release();
    // The delivery count is the server's, and under load it is approximate both ways: a delivery
    // handed to a pull request that expired meanwhile still counts (the handler sees one attempt
    // fewer), and one CI run saw attempt 1 twice (nats-server 2.9 can take a delivery back when it
    // believes the pull request had expired, though the client got it). What must hold: the
    // handler never sees an attempt past max_deliver, and gives up exactly once.
    expect(attempts[0]).toBe(1);
    expect(attempts.length).toBeGreaterThanOrEqual(1);
    expect(attempts.length).toBeLessThanOrEqual(3);
    for (const attempt of attempts) expect([1, 2]).toContain(attempt);
    expect(gaveUp).toHaveLength(1);
    expect(gaveUp[0].id).toBe(sent.id);
    expect((gaveUp[0].error as Error).message).toMatch(/no outcome after 2 deliveries/);
  });
});
