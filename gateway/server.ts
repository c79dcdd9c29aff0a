/**
 * The EC2 Query endpoint: read → parse → authenticate → act → render. Every answer, success or
 * error, carries a request id (x-amzn-RequestId) that also appears in the server log, so a user
 * quoting it can be matched to what happened.
 */
import { randomUUID } from 'crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'http';
import { createServer as createHttpsServer } from 'https';
import type { CloudEvent } from 'cloudevents';
import type { TaskStore } from '../tasks/store';
import type { AccountDirectory } from './accounts';
import { runAction } from './actions';
import type { ActionContext } from './actions/action';
import { authenticate } from './authenticate';
import { applyConnectionLimits, type ConnectionLimits, connectionLimitsFromEnv } from './connection-limits';
import { asEc2Error } from './errors';
import { parseQueryRequest, readRawRequest } from './query-request';
import type { Caller } from './signing-common';
import type { UserBucketProbe } from './user-objects';
import { renderError, renderResponse } from './xml';

export interface GatewayLog {
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

export interface GatewayDeps {
  tasks: TaskStore;
  publish(event: CloudEvent<unknown>): Promise<void>;
  accounts: AccountDirectory;
  region: string;
  /** host[:port] of the object-storage endpoints import manifests may live on. */
  allowedObjectHosts: string[];
  /** Removes an object of the image store, for DeleteVolume / DeleteSnapshot. */
  deleteImageObject?(bucket: string, key: string): Promise<void>;
  /** Reads a small object with an account's own key (bundle manifests for RegisterImage). */
  readUserObject?(accountId: string, bucket: string, key: string, maxBytes: number): Promise<Buffer | undefined>;
  /** Whether an account reaches a bucket with its own key (the bucket BundleInstance writes to). */
  probeUserBucket?(accountId: string, bucket: string): Promise<UserBucketProbe>;
  /** How long a task may take before it expires; 7 days by default. */
  taskLifetimeMs?: number;
  /** Largest disk a request may declare (IMAGING_MAX_IMAGE_BYTES). */
  maxImageBytes?: number;
  log?: GatewayLog;
  /** A certificate (chain) and its key, PEM: the endpoint serves HTTPS; absent, plain HTTP. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Import tasks one account may have pending or active at once (ResourceLimitExceeded beyond); absent, no cap. */
  maxOpenTasksPerAccount?: number;
  /** Timeouts and connection caps; by default DEFAULT_CONNECTION_LIMITS under IMAGING_EC2_* overrides. */
  connectionLimits?: Partial<ConnectionLimits>;
  /** Called once per answered request (metrics); `action` is 'unknown' when the request named none we could read. */
  onRequest?(observation: { action: string; status: number; seconds: number }): void;
}

export interface Gateway {
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Listens on `host` (127.0.0.1 by default); port 0 picks a free port. */
  listen(port: number, host?: string): Promise<{ url: string; close(): Promise<void> }>;
}

const DEFAULT_TASK_LIFETIME_MS = 7 * 24 * 3600 * 1000;

/** Without a logger only failures are reported, on stderr. */
const quietLog: GatewayLog = {
  info: () => undefined,
  warn: (obj, msg) => console.warn(msg ?? '', obj),
  error: (obj, msg) => console.error(msg ?? '', obj),
};

export function createGateway(deps: GatewayDeps): Gateway {
  const log = deps.log ?? quietLog;
  const taskLifetimeMs = deps.taskLifetimeMs ?? DEFAULT_TASK_LIFETIME_MS;

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    const started = Date.now();
    let action: string | undefined;
    let caller: Caller | undefined;
    try {
      const request = parseQueryRequest(await readRawRequest(req));
      action = request.action;
      caller = await authenticate(request, deps.accounts);
      const ctx: ActionContext = {
        caller,
        tasks: deps.tasks,
        publish: deps.publish,
        region: deps.region,
        allowedObjectHosts: deps.allowedObjectHosts,
        taskLifetimeMs,
        ...(deps.maxImageBytes !== undefined ? { maxImageBytes: deps.maxImageBytes } : {}),
        now: () => new Date(),
        log,
        ...(deps.deleteImageObject ? { deleteImageObject: deps.deleteImageObject } : {}),
        ...(deps.maxOpenTasksPerAccount !== undefined ? { maxOpenTasksPerAccount: deps.maxOpenTasksPerAccount } : {}),
        ...(deps.readUserObject ? { readUserObject: deps.readUserObject } : {}),
        ...(deps.probeUserBucket ? { probeUserBucket: deps.probeUserBucket } : {}),
      };
      const body = await runAction(request.action, request.params, ctx);
      send(res, 200, renderResponse(request.action, requestId, body), requestId);
      deps.onRequest?.({ action, status: 200, seconds: (Date.now() - started) / 1000 });
      log.info({ requestId, action, accountId: caller.accountId, status: 200, ms: Date.now() - started }, 'ec2 request');
    } catch (err) {
      const { error, internal } = asEc2Error(err);
      const entry = { requestId, action, accountId: caller?.accountId, status: error.httpStatus, code: error.code, ms: Date.now() - started };
      if (internal) log.error({ ...entry, err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, 'ec2 request failed');
      else log.info({ ...entry, message: error.message }, 'ec2 request refused');
      // Stop reading a body we refused to buffer: close the connection after the answer.
      send(res, error.httpStatus, renderError(error, requestId), requestId, error.httpStatus === 413);
      deps.onRequest?.({ action: action ?? 'unknown', status: error.httpStatus, seconds: (Date.now() - started) / 1000 });
    }
  }

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    serve(req, res).catch((err) => {
      log.error({ err: String(err) }, 'ec2 response could not be sent');
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  };

  async function listen(port: number, host = '127.0.0.1') {
    // An https server has the http server's timeouts and events; only the sockets are TLS.
    const server: Server = deps.tls ? (createHttpsServer({ cert: deps.tls.cert, key: deps.tls.key }, handle) as unknown as Server) : createServer(handle);
    applyConnectionLimits(server, { ...connectionLimitsFromEnv('ec2'), ...deps.connectionLimits });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    const boundPort = typeof address === 'object' && address ? address.port : port;
    const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
    return {
      url: `${deps.tls ? 'https' : 'http'}://${urlHost}:${boundPort}/`,
      close: () =>
        new Promise<void>((resolve, reject) => {
          server.close((err) => (err ? reject(err) : resolve()));
          // Clients keep connections alive; without this close() waits for them to time out.
          server.closeAllConnections();
        }),
    };
  }

  return { handle, listen };
}

function send(res: ServerResponse, status: number, xml: string, requestId: string, closeConnection = false): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, {
    'Content-Type': 'text/xml;charset=UTF-8',
    'Content-Length': Buffer.byteLength(xml),
    'x-amzn-RequestId': requestId,
    ...(closeConnection ? { Connection: 'close' } : {}),
  });
  res.end(xml);
}
