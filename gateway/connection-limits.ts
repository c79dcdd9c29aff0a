/**
 * Limits that keep an HTTP endpoint answering when someone opens thousands of connections and
 * sends nothing (issue 11, item 4): timeouts for headers, whole requests, keep-alive and idle
 * sockets, and caps on open connections, overall and per remote address.
 *
 * At a cap the newcomer is not what gets refused: the connection idle longest (no request in
 * progress on it) is closed to make room. Refusing newcomers would let a flood of idle sockets
 * lock out every real client, including ones from the same address as the flood; closing idle
 * sockets costs an honest client at most a reconnect. Only when every connection is busy is the
 * newcomer refused.
 */
import type { Server } from 'http';
import type { Socket } from 'net';
import { parseSettingValue, settingSpec, type SettingKey } from '../config/settings-schema';

export interface ConnectionLimits {
  /** Open connections at most, all addresses together. */
  maxConnections: number;
  /** Open connections at most from one remote address. */
  maxConnectionsPerAddress: number;
  /** Time allowed to receive a request's headers. */
  headersTimeoutMs: number;
  /** Time allowed to receive a whole request, body included; 0 for none (large uploads). */
  requestTimeoutMs: number;
  /** How long a kept-alive connection waits for its next request. */
  keepAliveTimeoutMs: number;
  /** A socket with no traffic at all for this long is closed. */
  idleTimeoutMs: number;
}


const SETTING_SUFFIXES: Record<keyof ConnectionLimits, string> = {
  maxConnections: 'MaxConnections',
  maxConnectionsPerAddress: 'MaxConnectionsPerAddress',
  headersTimeoutMs: 'HeadersTimeoutMs',
  requestTimeoutMs: 'RequestTimeoutMs',
  keepAliveTimeoutMs: 'KeepAliveTimeoutMs',
  idleTimeoutMs: 'IdleTimeoutMs',
};

/**
 * The limits of the EC2 endpoint or of the embedded S3 endpoint, from their rows of the settings
 * schema (IMAGING_EC2_MAX_CONNECTIONS, IMAGING_S3_REQUEST_TIMEOUT_MS, ...): the environment over
 * the rows' defaults, a wrong value refused in the schema's words.
 */
export function connectionLimitsFromEnv(endpoint: 'ec2' | 's3', env: NodeJS.ProcessEnv = process.env): ConnectionLimits {
  const limits = {} as ConnectionLimits;
  for (const field of Object.keys(SETTING_SUFFIXES) as (keyof ConnectionLimits)[]) {
    const spec = settingSpec(`${endpoint}${SETTING_SUFFIXES[field]}` as SettingKey);
    const text = env[spec.env]?.trim();
    limits[field] = parseSettingValue(spec, text ? text : spec.default!) as number;
  }
  return limits;
}

/**
 * The EC2 endpoint's defaults, from the settings schema. Keep-alive is longer than clients poll
 * (SDK waiters: 15 s): a socket closed as a request goes out on it resets that request.
 */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = connectionLimitsFromEnv('ec2', {});

/** Applies the limits to a server before it listens. */
export function applyConnectionLimits(server: Server, partial: Partial<ConnectionLimits> = {}): void {
  const limits = { ...DEFAULT_CONNECTION_LIMITS, ...partial };
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  // Idle sockets time out; with no 'timeout' listener node destroys them.
  server.timeout = limits.idleTimeoutMs;

  // Sockets with no request in progress, oldest idle first (a Set keeps insertion order).
  const idle = new Set<Socket>();
  const open = new Set<Socket>();
  const perAddress = new Map<string, Set<Socket>>();
  const busy = new Map<Socket, number>();

  const oldestIdle = (among: Iterable<Socket>): Socket | undefined => {
    for (const socket of idle) if (among === idle || (among as Set<Socket>).has(socket)) return socket;
    return undefined;
  };

  const makeRoom = (within: Set<Socket>, cap: number): boolean => {
    while (within.size >= cap) {
      const victim = within === open ? oldestIdle(idle) : oldestIdle(within);
      if (!victim) return false;
      forget(victim);
      victim.destroy();
    }
    return true;
  };

  function forget(socket: Socket): void {
    if (!open.delete(socket)) return;
    idle.delete(socket);
    busy.delete(socket);
    const address = socket.remoteAddress ?? '';
    const mine = perAddress.get(address);
    mine?.delete(socket);
    if (mine && mine.size === 0) perAddress.delete(address);
  }

  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    const mine = perAddress.get(address) ?? new Set<Socket>();
    if (!makeRoom(mine, limits.maxConnectionsPerAddress) || !makeRoom(open, limits.maxConnections)) {
      socket.destroy();
      return;
    }
    perAddress.set(address, mine);
    mine.add(socket);
    open.add(socket);
    idle.add(socket);
    socket.once('close', () => forget(socket));
  });

  server.on('request', (req, res) => {
    // Over TLS the request's socket wraps the TCP socket 'connection' gave us (its _parent).
    const socket = ((req.socket as Socket & { _parent?: Socket })._parent ?? req.socket) as Socket;
    if (!open.has(socket)) return;
    busy.set(socket, (busy.get(socket) ?? 0) + 1);
    idle.delete(socket);
    res.once('close', () => {
      if (!open.has(socket)) return;
      const left = (busy.get(socket) ?? 1) - 1;
      if (left > 0) return void busy.set(socket, left);
      busy.delete(socket);
      // Back of the queue: idle since now.
      idle.delete(socket);
      idle.add(socket);
    });
  });
}
