/**
 * What every process puts on its admin port: the readiness checks of the parts it uses (task
 * store, object storage, NATS) and the metrics registry, wired the same way in `imaging serve`,
 * `imaging gateway` and the stage host.
 */
import { HeadBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import type { TaskStore } from '../tasks/store';
import type { TaskDocument } from '../tasks/task';
import { startAdminServer, type ReadinessCheck, type RunningAdminServer } from './admin-server';
import { createServiceMetrics, type ServiceMetrics } from './metrics';

/** A cheap read: a task id that never exists, so the answer is a miss, not a document. */
export function taskStoreCheck(tasks: TaskStore): ReadinessCheck {
  return { name: 'task-store', check: async () => void (await tasks.get('readiness-probe')) };
}

/** HeadBucket of the image bucket: the endpoint answers, the service's key works, the bucket is there. */
export function objectStorageCheck(s3: S3Client, bucket: string): ReadinessCheck {
  return { name: 'object-storage', check: async () => void (await s3.send(new HeadBucketCommand({ Bucket: bucket }))) };
}

/** The NATS connection is up (not closed, not reconnecting) and answers a ping. */
export function natsCheck(bus: { checkConnection(): Promise<void> }): ReadinessCheck {
  return { name: 'nats', check: () => bus.checkConnection() };
}

export interface ProcessAdmin {
  metrics: ServiceMetrics;
  server: RunningAdminServer;
}

/**
 * Starts the admin port. `countByState`, when the store has it, feeds imaging_tasks at scrape
 * time. Extra `capabilities` (a tool some work needs) report on /readyz/<name> without making
 * the whole process unready.
 */
export async function startProcessAdmin(options: {
  process: string;
  port: number;
  host?: string;
  metrics?: ServiceMetrics;
  tasks?: TaskStore;
  checks: ReadinessCheck[];
  capabilities?: ReadinessCheck[];
}): Promise<ProcessAdmin> {
  const store = options.tasks as (TaskStore & { countByState?: () => Promise<Record<string, number>> }) | undefined;
  const metrics =
    options.metrics ??
    createServiceMetrics({ process: options.process, taskStateCounts: store?.countByState ? () => store.countByState!() : undefined });
  const checks = [...options.checks, ...(options.capabilities ?? []).map((c) => ({ ...c, capability: true }))];
  const server = await startAdminServer(options.port, options.host ?? '0.0.0.0', { registry: metrics.registry, checks });
  return { metrics, server };
}

export interface StateChangeLog {
  info(obj: object, msg?: string): void;
}

/**
 * The task store, observing state changes: every compare-and-set that moves a task to another
 * state counts in imaging_task_state_changes_total and is logged once, with the task's ids. The
 * previous state is the one this process read at the expected version (a CAS needs that read).
 */
export function observedTaskStore(store: TaskStore, metrics: ServiceMetrics, log?: StateChangeLog): TaskStore {
  return observing(store, metrics, log, new Map<string, string>());
}

const LOGGING_TO = Symbol('observed task store: the same store logging to another logger');

/**
 * The same observed store, logging its state changes to `log` (a logger carrying the ids of the
 * event being handled); a store that is not observed comes back as it is.
 */
export function taskStoreLoggingTo(store: TaskStore, log: StateChangeLog): TaskStore {
  const relog = (store as TaskStore & { [LOGGING_TO]?: (log: StateChangeLog) => TaskStore })[LOGGING_TO];
  return relog ? relog(log) : store;
}

function observing(store: TaskStore, metrics: ServiceMetrics, log: StateChangeLog | undefined, seen: Map<string, string>): TaskStore {
  const remember = (doc: TaskDocument | undefined) => {
    if (!doc) return;
    if (seen.size > 10_000) seen.clear();
    seen.set(`${doc.id}@${doc.version}`, doc.state);
  };
  const observed: TaskStore = Object.create(store);
  observed.get = async (id) => {
    const doc = await store.get(id);
    remember(doc);
    return doc;
  };
  observed.create = async (task) => {
    await store.create(task);
    metrics.stateChanges.inc({ to: task.state });
    log?.info({ taskId: task.id, accountId: task.accountId, to: task.state }, 'task created');
  };
  observed.compareAndSet = async (next, expectedVersion) => {
    const key = `${next.id}@${expectedVersion}`;
    const from = seen.get(key);
    seen.delete(key);
    const written = await store.compareAndSet(next, expectedVersion);
    if (written && from !== undefined && from !== next.state) {
      metrics.stateChanges.inc({ to: next.state });
      log?.info({ taskId: next.id, accountId: next.accountId, from, to: next.state, statusMessage: next.statusMessage }, 'task state changed');
    }
    return written;
  };
  Object.defineProperty(observed, LOGGING_TO, { value: (other: StateChangeLog) => observing(store, metrics, other, seen) });
  return observed;
}

/** The gateway's request hook: requests by action and HTTP code, latency by action; names outside `known` count as 'other'. */
export function gatewayRequestObserver(metrics: ServiceMetrics, known: readonly string[]) {
  const actions = new Set(known);
  return ({ action, status, seconds }: { action: string; status: number; seconds: number }) => {
    const label = actions.has(action) ? action : action === 'unknown' ? 'unknown' : 'other';
    metrics.httpRequests.inc({ action: label, code: String(status) });
    metrics.httpDuration.observe({ action: label }, seconds);
  };
}
