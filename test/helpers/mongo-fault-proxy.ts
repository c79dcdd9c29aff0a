/**
 * A real TCP proxy in front of a MongoDB wire server that can fail as a network does:
 * - down(): cuts every connection and refuses new ones until up();
 * - loseNextReplyTo(collection, command): forwards the next such command (it is executed) but
 *   drops the server's reply and cuts the connection, so the client cannot know the outcome.
 * It reads the wire protocol's message header (length, requestID, responseTo) to pair replies
 * with requests; bodies are passed through untouched.
 */
import { connect, createServer, type Server, type Socket } from 'net';
import type { AddressInfo } from 'net';

export interface MongoFaultProxy {
  uri: string;
  down(): void;
  up(): void;
  /** `thenDown`: the proxy goes down as it cuts, until up(). */
  loseNextReplyTo(command: string, collection: string, options?: { thenDown?: boolean }): void;
  /** Replies dropped so far. */
  lostReplies(): number;
  stop(): Promise<void>;
}

/** Splits complete wire messages off the front of `buffer`; the rest stays for later. */
function messages(buffer: Buffer): { complete: Buffer[]; rest: Buffer } {
  const complete: Buffer[] = [];
  let at = 0;
  while (buffer.length - at >= 16) {
    const length = buffer.readInt32LE(at);
    if (buffer.length - at < length) break;
    complete.push(buffer.subarray(at, at + length));
    at += length;
  }
  return { complete, rest: buffer.subarray(at) };
}

export async function startMongoFaultProxy(targetUri: string): Promise<MongoFaultProxy> {
  const { hostname, port } = new URL(targetUri);
  const sockets = new Set<Socket>();
  let isDown = false;
  let lose: { command: Buffer; collection: Buffer; thenDown: boolean } | undefined;
  let downAfterCut = false;
  let lost = 0;
  const server: Server = createServer((client) => {
    if (isDown) return void client.destroy();
    const upstream = connect({ host: hostname, port: Number(port) });
    sockets.add(client).add(upstream);
    const cut = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', () => sockets.delete(client)).on('error', cut);
    upstream.on('close', () => sockets.delete(upstream)).on('error', cut);
    client.on('close', cut);
    upstream.on('close', cut);
    const awaited = new Set<number>();
    let fromClient: Buffer = Buffer.alloc(0);
    let fromServer: Buffer = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      const split = messages(Buffer.concat([fromClient, chunk]));
      fromClient = split.rest;
      for (const message of split.complete) {
        if (lose && message.includes(lose.command) && message.includes(lose.collection)) {
          awaited.add(message.readInt32LE(4));
          downAfterCut = lose.thenDown;
          lose = undefined;
        }
        upstream.write(message);
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      const split = messages(Buffer.concat([fromServer, chunk]));
      fromServer = split.rest;
      for (const message of split.complete) {
        if (awaited.has(message.readInt32LE(8))) {
          lost++;
          if (downAfterCut) {
            isDown = true;
            for (const socket of sockets) socket.destroy();
          }
          return cut();
        }
        client.write(message);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    uri: `mongodb://127.0.0.1:${(server.address() as AddressInfo).port}`,
    down() {
      isDown = true;
      for (const socket of sockets) socket.destroy();
    },
    up: () => void (isDown = false),
    loseNextReplyTo(command, collection, options = {}) {
      // BSON: the command's key as a C string, the collection as a string value (with its NUL).
      lose = { command: Buffer.from(`${command}\0`), collection: Buffer.from(`${collection}\0`), thenDown: options.thenDown ?? false };
    },
    lostReplies: () => lost,
    async stop() {
      isDown = true;
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
