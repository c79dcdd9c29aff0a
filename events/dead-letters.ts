/**
 * The dead-letter stream, read by an operator: every event a stage gave up on, with the stage and
 * the reason (events/jetstream-bus.ts writes them). A letter is identified by its sequence in
 * the stream; the original CloudEvent id is shown too and accepted as well.
 */
import type { CloudEvent } from 'cloudevents';
import { connect, type JetStreamManager, type NatsConnection } from 'nats';
import { fromNatsMessage } from './nats-binding';
import { DEAD_LETTER_HEADERS, DEAD_LETTER_STREAM } from './subjects';

export interface DeadLetter {
  seq: number;
  stage: string;
  reason: string;
  at: string;
  event: CloudEvent<unknown>;
}

export class DeadLetterStream {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
  ) {}

  static async connect(servers: string | string[]): Promise<DeadLetterStream> {
    const nc = await connect({ servers, name: 'imaging-dead-letters', maxReconnectAttempts: 2 });
    try {
      return new DeadLetterStream(nc, await nc.jetstreamManager());
    } catch (error) {
      await nc.close();
      throw error;
    }
  }

  /** Every letter, oldest first; none when the stream does not exist yet. */
  async list(): Promise<DeadLetter[]> {
    let state;
    try {
      state = (await this.jsm.streams.info(DEAD_LETTER_STREAM)).state;
    } catch (error) {
      if (/not found/i.test((error as Error).message)) return [];
      throw error;
    }
    const letters: DeadLetter[] = [];
    if (state.messages === 0) return letters;
    for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
      const letter = await this.get(seq).catch(() => undefined); // deleted ones leave gaps
      if (letter) letters.push(letter);
    }
    return letters;
  }

  async get(seq: number): Promise<DeadLetter> {
    const stored = await this.jsm.streams.getMessage(DEAD_LETTER_STREAM, { seq });
    const headers: Record<string, string> = {};
    for (const name of stored.header?.keys() ?? []) headers[name] = stored.header.get(name);
    const event = fromNatsMessage({ headers, data: stored.data });
    return { seq, stage: headers[DEAD_LETTER_HEADERS.stage] ?? '', reason: headers[DEAD_LETTER_HEADERS.reason] ?? '', at: headers[DEAD_LETTER_HEADERS.at] ?? '', event };
  }

  /** A letter by its sequence number or by its event's id. */
  async find(id: string): Promise<DeadLetter | undefined> {
    if (/^\d+$/.test(id)) return this.get(Number(id)).catch(() => undefined);
    return (await this.list()).find((letter) => letter.event.id === id);
  }

  async remove(seq: number): Promise<void> {
    await this.jsm.streams.deleteMessage(DEAD_LETTER_STREAM, seq, false);
  }

  async close(): Promise<void> {
    if (!this.nc.isClosed()) await this.nc.drain();
  }
}
