/**
 * The service's Prometheus metrics, one registry per process. Every process type (gateway, stage
 * host, `imaging serve`) registers the same names, so one dashboard reads them all; a process
 * only moves the series that concern it. Node's default process metrics come along.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { workerThreadsStarted } from '../toolkit/workers/worker-pool';

export interface ServiceMetrics {
  registry: Registry;
  eventsHandled: Counter<'stage'>;
  eventsFailed: Counter<'stage'>;
  eventsRedelivered: Counter<'stage'>;
  eventsDeadLettered: Counter<'stage'>;
  inFlight: Gauge<'stage'>;
  stageDuration: Histogram<'stage' | 'outcome'>;
  bytesRead: Counter<'stage'>;
  bytesWritten: Counter<'stage'>;
  conversionThroughput: Histogram<'format'>;
  taskStates: Gauge<'state'>;
  stateChanges: Counter<'to'>;
  httpRequests: Counter<'action' | 'code'>;
  httpDuration: Histogram<'action'>;
  workerThreads: Gauge<'pool'>;
  limitRefusals: Counter<'limit'>;
}

/**
 * Makes the registry and its metrics. `taskStateCounts`, when given, is asked for the number of
 * tasks in each state at scrape time (one count query, not a series per task).
 */
export function createServiceMetrics(options: { process: string; taskStateCounts?: () => Promise<Record<string, number>> }): ServiceMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ process: options.process });
  collectDefaultMetrics({ register: registry });
  const counter = <L extends string>(name: string, help: string, labelNames: L[]) => new Counter<L>({ name, help, labelNames, registers: [registry] });
  const taskStateCounts = options.taskStateCounts;
  return {
    registry,
    eventsHandled: counter('imaging_events_handled_total', 'Events a stage handled to completion (acknowledged).', ['stage']),
    eventsFailed: counter('imaging_events_failed_total', 'Deliveries whose handler failed (handed back for redelivery).', ['stage']),
    eventsRedelivered: counter('imaging_events_redelivered_total', 'Deliveries that were not the first of their event.', ['stage']),
    eventsDeadLettered: counter('imaging_events_dead_lettered_total', 'Events given up on after their last delivery and moved to the dead-letter stream.', ['stage']),
    inFlight: new Gauge({ name: 'imaging_stage_in_flight', help: 'Deliveries being worked on now.', labelNames: ['stage'], registers: [registry] }),
    stageDuration: new Histogram({
      name: 'imaging_stage_duration_seconds',
      help: 'Time a stage handler took per delivery.',
      labelNames: ['stage', 'outcome'],
      buckets: [0.01, 0.05, 0.25, 1, 5, 15, 60, 300, 1800, 7200],
      registers: [registry],
    }),
    bytesRead: counter('imaging_bytes_read_total', 'Image bytes read from object storage.', ['stage']),
    bytesWritten: counter('imaging_bytes_written_total', 'Image bytes written to object storage.', ['stage']),
    conversionThroughput: new Histogram({
      name: 'imaging_conversion_throughput_bytes_per_second',
      help: 'Virtual-disk bytes converted per second, one observation per finished conversion.',
      labelNames: ['format'],
      buckets: [1, 4, 16, 32, 64, 128, 256, 512, 1024].map((mib) => mib * 1024 * 1024),
      registers: [registry],
    }),
    taskStates: new Gauge({
      name: 'imaging_tasks',
      help: 'Tasks in each state (counted in the task store at scrape time).',
      labelNames: ['state'],
      registers: [registry],
      async collect() {
        if (!taskStateCounts) return;
        this.reset();
        for (const [state, count] of Object.entries(await taskStateCounts())) this.set({ state }, count);
      },
    }),
    stateChanges: counter('imaging_task_state_changes_total', 'Task state changes made by this process.', ['to']),
    httpRequests: counter('imaging_http_requests_total', 'EC2 API requests by action and HTTP status.', ['action', 'code']),
    httpDuration: new Histogram({
      name: 'imaging_http_request_duration_seconds',
      help: 'EC2 API request latency by action.',
      labelNames: ['action'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers: [registry],
    }),
    workerThreads: new Gauge({
      name: 'imaging_worker_threads',
      help: "The toolkit's (de)compression worker threads alive now, by pool (IMAGING_WORKER_THREADS caps each).",
      labelNames: ['pool'],
      registers: [registry],
      collect() {
        for (const [pool, count] of Object.entries(workerThreadsStarted())) this.set({ pool }, count);
      },
    }),
    limitRefusals: counter('imaging_limit_refusals_total', 'Work refused or failed by a configured limit (concurrency, scratch space, image size).', ['limit']),
  };
}
