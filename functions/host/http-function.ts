/**
 * Runs a stage as an HTTP CloudEvent function under @google-cloud/functions-framework, the way
 * Knative Eventing (or any CloudEvents HTTP sender) drives it: one request per event, a 2xx
 * acknowledges it, a 5xx makes the sender retry. The next event goes to K_SINK when Knative
 * injected one.
 */
import { CloudEvent, HTTP, type CloudEventV1 } from 'cloudevents';
import { cloudEvent } from '@google-cloud/functions-framework';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import type { AddressInfo } from 'net';
import type { Delivery } from '../../events/bus';
import type { Stage } from '../stage';
import type { StageDeps } from './deps';
import { invokeStage, type Publish } from './invoke-stage';

export type { Publish } from './invoke-stage';

/** HTTP delivery knows nothing of attempts or ack deadlines: the sender owns retries and timeouts. */
const HTTP_DELIVERY: Delivery = { attempt: 1, working: () => undefined };

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
 * A CloudEvent function (framework `cloudEvent` signature) running the stage. The framework
 * hands over a plain object; it becomes a validated CloudEvent before the stage sees it. An
 * event that is not valid is logged and acknowledged: retrying it cannot help.
 */
export function cloudEventFunction(stage: Stage, deps: StageDeps, publish?: Publish): (event: CloudEventV1<unknown>) => Promise<void> {
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

let registrations = 0;

/**
 * Serves the stage over HTTP on `port` (0 = any free port). The framework only builds servers
 * for registered functions, so each call registers the function under a name of its own.
 */
export async function startHttpStage(stage: Stage, deps: StageDeps, port: number, publish?: Publish, host = '0.0.0.0'): Promise<RunningHttpStage> {
  const name = `imaging-${stage.name}-${++registrations}`;
  cloudEvent(name, cloudEventFunction(stage, deps, publish));
  const server = getTestServer(name);
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
