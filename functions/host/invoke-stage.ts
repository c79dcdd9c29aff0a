import type { CloudEvent } from 'cloudevents';
import type { Delivery } from '../../events/bus';
import { eventLogIds } from '../../events/log-fields';
import { taskStoreLoggingTo } from '../../ops/process-admin';
import type { Logger, Stage, StageContext } from '../stage';
import type { StageDeps } from './deps';
import { ServerError } from '../errors';

export type Publish = (event: CloudEvent<unknown>) => Promise<void>;

/** The ids every log line about this event carries: read leniently, a malformed event still logs. */
export function eventLogFields(stage: string, event: CloudEvent<unknown>): Record<string, string | undefined> {
  return { stage, ...eventLogIds(event) };
}

/** A logger whose every line carries `fields` (pino's child when there is one). */
export function loggerWith(log: Logger, fields: Record<string, unknown>): Logger {
  const child = (log as Logger & { child?: (bindings: object) => Logger }).child;
  if (typeof child === 'function') return child.call(log, fields);
  const merge = (obj: object | string, msg?: string): [object, string | undefined] => (typeof obj === 'string' ? [fields, obj] : [{ ...fields, ...obj }, msg]);
  return {
    info: (obj, msg) => log.info(...merge(obj, msg)),
    warn: (obj, msg) => log.warn(...merge(obj, msg)),
    error: (obj, msg) => log.error(...merge(obj, msg)),
  };
}

/**
 * Test-only fault injection: IMAGING_TEST_FAIL_STAGE=<stage> makes that stage throw on every
 * delivery, so the dead-letter path can be driven end to end with real processes.
 */
function injectedFault(stage: string): Error | undefined {
  return process.env.IMAGING_TEST_FAIL_STAGE === stage ? new Error(`injected fault: IMAGING_TEST_FAIL_STAGE=${stage}`) : undefined;
}

/** Runs one delivery through a stage; every host (bus, HTTP) goes through here. */
export async function invokeStage(stage: Stage, deps: StageDeps, publish: Publish, event: CloudEvent<unknown>, delivery: Delivery): Promise<void> {
  const log = loggerWith(deps.log, eventLogFields(stage.name, event));
  const metrics = deps.metrics;
  const labels = { stage: stage.name };
  // State changes made while handling this event are logged with its ids (stage, event, task, account).
  const ctx: StageContext = { tasks: taskStoreLoggingTo(deps.tasks, log), s3: deps.s3, config: deps.config, publish, delivery, log };
  if (metrics) {
    ctx.recordTransfer = ({ bytesRead, bytesWritten, conversion }) => {
      if (bytesRead) metrics.bytesRead.inc(labels, bytesRead);
      if (bytesWritten) metrics.bytesWritten.inc(labels, bytesWritten);
      if (conversion && conversion.seconds > 0) metrics.conversionThroughput.observe({ format: conversion.format }, conversion.virtualBytes / conversion.seconds);
    };
  }
  if (delivery.attempt > 1) metrics?.eventsRedelivered.inc(labels);
  metrics?.inFlight.inc(labels);
  const stopTimer = metrics?.stageDuration.startTimer(labels);
  try {
    const fault = injectedFault(stage.name);
    if (fault) throw fault;
    await stage.handle(event, ctx);
    metrics?.eventsHandled.inc(labels);
    stopTimer?.({ outcome: 'handled' });
  } catch (error) {
    metrics?.eventsFailed.inc(labels);
    if ((error as Error)?.name === 'ScratchSpaceError') metrics?.limitRefusals.inc({ limit: 'scratch-space' });
    stopTimer?.({ outcome: 'failed' });
    // Logged here with the attempt because the host's reaction (redelivery) happens elsewhere.
    // The service's own fault (a wrong setting) is the operator's to fix: error level.
    if (error instanceof ServerError) log.error({ type: event.type, attempt: delivery.attempt, err: error }, 'stage failed on this delivery: a fault of the service, not of the request');
    else log.warn({ type: event.type, attempt: delivery.attempt, err: error }, 'stage failed on this delivery');
    throw error;
  } finally {
    metrics?.inFlight.dec(labels);
  }
}
