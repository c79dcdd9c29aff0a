/**
 * A real TCP endpoint that accepts connections and never answers (a blackholed S3, a stalled load
 * balancer) until heal(); from then on new connections are forwarded to `target`. Connections
 * taken while blackholed stay silent until stop().
 */
import { connect, createServer, type Server, type Socket } from 'net';
import type { AddressInfo } from 'net';

export interface BlackholeProxy {
  endpoint: string;
  /** Connections accepted while blackholed. */
  swallowed(): number;
  heal(): void;
  stop(): Promise<void>;
}

export async function startBlackholeProxy(target: string): Promise<BlackholeProxy> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  let healed = false;
  let swallowed = 0;
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client)).on('error', () => undefined);
    if (!healed) {
      swallowed++;
      client.resume(); // read and drop whatever is sent; never write
      return;
    }
    const upstream = connect({ host: hostname, port: Number(port) });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream)).on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    swallowed: () => swallowed,
    heal: () => void (healed = true),
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
