import type { Socket } from 'net';
import { buildConnector } from 'undici';

/**
 * An undici connector that can tell, from a socket error, whether the socket had already carried
 * bytes from the server before it failed: a kept-alive socket the server closed while it sat idle.
 *
 * undici fails a request whose socket closes before the response, and does not send it again;
 * a GET that meets a socket the server dropped while it was idle is worth sending once more, a
 * GET whose fresh socket is dropped is not (that server is refusing us). The error is all a
 * request sees of its socket, so the connector marks errors: a socket's own errors (ECONNRESET,
 * EPIPE) directly, undici's SocketError ("other side closed") by the socket details it carries.
 */
const REUSED = Symbol('imagingSocketReused');

/** Bytes a socket had read when it was handed to undici (a TLS handshake's), by local address:port. */
const readAtConnect = new Map<string, number>();

function localKey(address: string | undefined, port: number | undefined): string | undefined {
  return address !== undefined && port !== undefined ? `${address}:${port}` : undefined;
}

export function reuseAwareConnector(options: buildConnector.BuildOptions): buildConnector.connector {
  const connect = buildConnector(options);
  return (connectOptions, callback) => {
    connect(connectOptions, (...args) => {
      const socket = args[1] as Socket | null;
      if (socket) {
        const base = socket.bytesRead;
        const key = localKey(socket.localAddress, socket.localPort);
        if (key) readAtConnect.set(key, base);
        // Prepended: runs before undici's own listener hands the error to the request.
        socket.prependListener('error', (error: Error) => {
          (error as unknown as Record<symbol, boolean>)[REUSED] = socket.bytesRead > base;
        });
        // Later than undici's close handling, which reads the entry.
        socket.once('close', () => setImmediate(() => key && readAtConnect.get(key) === base && readAtConnect.delete(key)));
      }
      (callback as (...a: typeof args) => void)(...args);
    });
  };
}

/** Whether the socket that failed with `error` had received bytes before (it served an earlier response). */
export function failedOnUsedSocket(error: unknown): boolean {
  const marked = (error as Record<symbol, unknown>)?.[REUSED];
  if (typeof marked === 'boolean') return marked;
  // undici's SocketError carries the socket's details instead of the socket.
  const socket = (error as { socket?: { localAddress?: string; localPort?: number; bytesRead?: number } })?.socket;
  const key = localKey(socket?.localAddress, socket?.localPort);
  const base = key ? readAtConnect.get(key) : undefined;
  return base !== undefined && (socket?.bytesRead ?? 0) > base;
}
