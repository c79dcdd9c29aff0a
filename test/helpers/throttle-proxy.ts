/**
 * A real TCP proxy in front of a server that slows what clients send to it to `bytesPerSecond`
 * (answers pass at full speed): uploads through it crawl, so work that writes is long and can be
 * caught in flight. Connections are real sockets; nothing is stubbed.
 */
import { connect, createServer, type Server, type Socket } from 'net';
import type { AddressInfo } from 'net';

export interface ThrottleProxy {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  stop(): Promise<void>;
}

export async function startThrottleProxy(target: string, bytesPerSecond: number): Promise<ThrottleProxy> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect({ host: hostname, port: Number(port) });
    sockets.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    upstream.pipe(client);
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk);
      // Hold further input for as long as this chunk "takes" at the rate.
      client.pause();
      setTimeout(() => client.resume(), Math.ceil((chunk.length / bytesPerSecond) * 1000));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
