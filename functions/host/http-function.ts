/**
 * Runs a stage as an HTTP CloudEvent function, the way Knative Eventing (or any CloudEvents HTTP
 * sender) drives it: one request per event, a 2xx acknowledges it, a 5xx makes the sender retry.
 * The next event goes to K_SINK when Knative injected one.
 *
 * The function has @google-cloud/functions-framework's public CloudEventFunction signature, so it
 * can be registered with the framework's `cloudEvent` and run by its own server. The framework's
 * public API (5.x: `http`, `cloudEvent` and types) has no way to serve a function in-process (only
 * its @beta testing module does), so startHttpStage serves it with node:http and the cloudevents
 * SDK's public HTTP binding, which reads binary and structured modes as the framework does.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'http';
import { CloudEvent, HTTP, type CloudEventV1 } from 'cloudevents';
import type { CloudEventFunction } from '@google-cloud/functions-framework';
import type { AddressInfo } from 'net';
import type { Delivery } from '../../events/bus';
import type { Stage } from '../stage';
import type { StageDeps } from './deps';
import { invokeStage, type Publish } from './invoke-stage';

export type { Publish } from './invoke-stage';

/** HTTP delivery knows nothing of attempts or ack deadlines: the sender owns retries and timeouts. */
const HTTP_DELIVERY: Delivery = { attempt: 1, working: () => undefined };

/** Events carry ids and object locations only; anything bigger is not one of ours. */
const MAX_EVENT_BYTES = 1024 * 1024;

/** Sends events to a CloudEvents HTTP endpoint (Knative's K_SINK) in binary content mode. */
export function sinkPublisher(sinkUrl: string): Publish {
  return async (event) => {
    const message = HTTP.binary(event);
    const response = await fetch(sinkUrl, {
      method: 'POST',
      headers: message.headers as Record<string, string>,
      body: message.body as string | Uint8Array,
    });
    // A lost next event would stall the task; failing makes the sender retry this one.
    if (!response.ok) throw new Error(`event sink ${sinkUrl} answered ${response.status} for ${event.type} ${event.id}`);
  };
}

function publisherFromEnv(): Publish {
  const sink = process.env.K_SINK;
  if (sink) return sinkPublisher(sink);
  return async (event) => {
    throw new Error(`cannot emit ${event.type}: no publisher given and K_SINK is not set`);
  };
}

/**
 * A CloudEvent function (the framework's `CloudEventFunction` signature) running the stage. It
 * may be handed a plain object; it becomes a validated CloudEvent before the stage sees it. An
 * event that is not valid is logged and acknowledged: retrying it cannot help.
 */
export function cloudEventFunction(stage: Stage, deps: StageDeps, publish?: Publish): CloudEventFunction<unknown> & ((event: CloudEventV1<unknown>) => Promise<void>) {
  const emit = publish ?? publisherFromEnv();
  return async (incoming) => {
    let event: CloudEvent<unknown>;
    try {
      event = new CloudEvent<unknown>({ ...incoming });
    } catch (error) {
      deps.log.error({ stage: stage.name, err: error, id: incoming?.id }, 'dropped a request that is not a valid CloudEvent');
      return;
    }
    await invokeStage(stage, deps, emit, event, HTTP_DELIVERY);
  };
}

export interface RunningHttpStage {
  url: string;
  close(): Promise<void>;
}

/** The request body, refused past MAX_EVENT_BYTES. */
function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_EVENT_BYTES) {
        resolve(undefined);
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** One request: a CloudEvent in binary or structured mode, answered 204 when handled, 500 when the stage failed. */
async function serveEvent(fn: CloudEventFunction<unknown>, stage: Stage, deps: StageDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end();
    return;
  }
  const body = await readBody(req);
  if (body === undefined) {
    res.writeHead(413).end();
    return;
  }
  let incoming: CloudEventV1<unknown>;
  try {
    const parsed = HTTP.toEvent({ headers: req.headers, body: body.toString('utf8') });
    if (Array.isArray(parsed)) throw new Error('batched CloudEvents are not accepted');
    incoming = parsed as CloudEventV1<unknown>;
  } catch (error) {
    // Not a CloudEvent: acknowledged, since sending it again cannot make it one.
    deps.log.error({ stage: stage.name, err: error }, 'dropped a request that is not a valid CloudEvent');
    res.writeHead(204).end();
    return;
  }
  try {
    await fn(incoming);
    res.writeHead(204).end();
  } catch {
    // invokeStage has logged it with the event; the sender retries on a 5xx.
    res.writeHead(500, { 'content-type': 'text/plain' }).end(`stage ${stage.name} failed on event ${incoming.id}`);
  }
}

/**
 * Serves the stage over HTTP on `port` (0 = any free port). `maxInFlight` (IMAGING_CONCURRENCY)
 * bounds the events worked on at once: one more is answered 429 with a Retry-After, and its
 * sender delivers it again later (Knative's containerConcurrency should match it).
 */
export async function startHttpStage(stage: Stage, deps: StageDeps, port: number, publish?: Publish, host = '0.0.0.0', maxInFlight?: number): Promise<RunningHttpStage> {
  const fn = cloudEventFunction(stage, deps, publish);
  let inFlight = 0;
  const server = createServer((req, res) => {
    if (maxInFlight !== undefined && req.method === 'POST' && inFlight >= maxInFlight) {
      const message = `stage ${stage.name} is working on ${inFlight} events, its limit (IMAGING_CONCURRENCY=${maxInFlight}); send this one again later`;
      deps.log.warn({ stage: stage.name, inFlight, limit: maxInFlight }, 'refused an event over the concurrency limit');
      deps.metrics?.limitRefusals.inc({ limit: 'concurrency' });
      req.resume();
      res.writeHead(429, { 'content-type': 'text/plain', 'retry-after': '1' }).end(message);
      return;
    }
    inFlight++;
    res.once('close', () => inFlight--);
    serveEvent(fn, stage, deps, req, res).catch((error) => {
      deps.log.error({ stage: stage.name, err: error }, 'request failed');
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return {
    url: `http://${shownHost}:${address.port}/`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        // Stop accepting; requests in progress finish first (a conversion may take minutes).
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeIdleConnections();
      }),
  };
}
