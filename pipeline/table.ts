/**
 * The pipeline, declared once. Each row is one stage: the event it consumes, the event it emits,
 * the task state it works on and the one it leaves the task in, what users read while it runs,
 * and how its consumer is run by default. The event types, the task states, the state machine's
 * transitions, the buses' consumers, the stage host, `imaging serve` and the stages' own
 * completion all follow from this table; the chart and stack.yml are checked against it
 * (test/integration/pipeline-table.test.ts).
 *
 * Pure data that imports nothing, so that tasks/ and events/ may read it without reaching up
 * into functions/. A stage's handler is bound to its row in functions/stages.ts.
 */

export interface PipelineRow {
  /** IMAGING_STAGE, the durable consumer's name and the workload's name in the chart and stack.yml. */
  readonly stage: string;
  /** The CloudEvent type the stage consumes (one per stage: a Knative Trigger filters on it). */
  readonly consumes: `io.imaging.${string}`;
  /** The CloudEvent type the stage emits when it has advanced the task. */
  readonly emits: `io.imaging.${string}`;
  /** The task state the stage works on; an event for a task in any other state is dropped. */
  readonly expects: string;
  /** The task state the stage leaves the task in. */
  readonly movesTo: string;
  /** The task's status message while this stage has it (set by whoever hands the task to it). */
  readonly statusMessage: string;
  /** The share of the task's progress (percent) this stage covers; it ends at the second figure. */
  readonly progress: readonly [from: number, to: number];
  /** Deliveries one process works on at once (IMAGING_CONCURRENCY). */
  readonly concurrency: number;
  /** How long a delivery may go without a sign of life before another replica gets it (IMAGING_ACK_WAIT_MS). */
  readonly ackWaitMs: number;
  /**
   * Attempts before the task is failed with the last error (IMAGING_MAX_DELIVER). 12 with the
   * default back-off (events/retry-backoff.ts) rides out a 5-minute outage of S3, NATS or MongoDB.
   */
  readonly maxDeliver: number;
}

export const PIPELINE = [
  {
    stage: 'manifest',
    consumes: 'io.imaging.import.requested',
    emits: 'io.imaging.manifest-received',
    // pending-upload: waiting for the manifest and every part to answer HEAD.
    expects: 'pending-upload',
    movesTo: 'manifest-received',
    statusMessage: 'Pending import-image upload',
    progress: [0, 5],
    concurrency: 1,
    ackWaitMs: 30_000,
    maxDeliver: 12,
  },
  {
    stage: 'decrypt',
    consumes: 'io.imaging.manifest-received',
    emits: 'io.imaging.bundle-decrypted',
    expects: 'manifest-received',
    // For plain imports bundle-decrypted means the source is described (parts verified).
    movesTo: 'bundle-decrypted',
    statusMessage: 'Verifying uploaded parts',
    progress: [5, 10],
    concurrency: 1,
    ackWaitMs: 30_000,
    maxDeliver: 12,
  },
  {
    stage: 'convert',
    consumes: 'io.imaging.bundle-decrypted',
    emits: 'io.imaging.disk-converted',
    expects: 'bundle-decrypted',
    movesTo: 'disk-converted',
    statusMessage: 'Converting',
    progress: [10, 90],
    concurrency: 1,
    ackWaitMs: 30_000,
    maxDeliver: 12,
  },
  {
    stage: 'validate',
    consumes: 'io.imaging.disk-converted',
    emits: 'io.imaging.validated',
    expects: 'disk-converted',
    movesTo: 'validated',
    statusMessage: 'Validating',
    progress: [90, 95],
    concurrency: 1,
    ackWaitMs: 30_000,
    maxDeliver: 12,
  },
  {
    // Dynamic validation: boots the disk under qemu when the import asks (or the operator says
    // always); any other task passes straight through. Its own row so it can have its own nodes.
    stage: 'boot-check',
    consumes: 'io.imaging.validated',
    emits: 'io.imaging.boot-checked',
    expects: 'validated',
    movesTo: 'boot-checked',
    statusMessage: 'Booting',
    progress: [95, 98],
    // One guest at a time per process: a boot takes a core and the guest's memory.
    concurrency: 1,
    ackWaitMs: 30_000,
    // A guest that does not boot is the user's ClientError, never retried; the budget is for
    // outages (reading the disk from S3), as every stage's.
    maxDeliver: 12,
  },
  {
    stage: 'register',
    consumes: 'io.imaging.boot-checked',
    emits: 'io.imaging.registered',
    expects: 'boot-checked',
    movesTo: 'completed',
    statusMessage: 'Registering',
    progress: [98, 100],
    concurrency: 1,
    ackWaitMs: 30_000,
    maxDeliver: 12,
  },
  {
    // Not chained to the import rows: CreateInstanceExportTask, ExportImage and BundleInstance start
    // it on a task of their own (BundleInstance's writes a bundle: functions/export/bundle-instance.ts).
    stage: 'export',
    consumes: 'io.imaging.export.requested',
    emits: 'io.imaging.exported',
    expects: 'export-requested',
    movesTo: 'completed',
    statusMessage: 'Exporting',
    progress: [0, 100],
    concurrency: 1,
    ackWaitMs: 30_000,
    maxDeliver: 12,
  },
] as const satisfies readonly PipelineRow[];

type Row = (typeof PIPELINE)[number];

/** The name of a stage in the table. */
export type StageName = Row['stage'];

/** The row of one stage, with its literal types. */
export type RowOf<S extends StageName> = Extract<Row, { stage: S }>;

/** The event type a stage consumes, and the one it emits. */
export type ConsumedBy<S extends StageName> = { [R in Row as R['stage']]: R['consumes'] }[S];
export type EmittedBy<S extends StageName> = { [R in Row as R['stage']]: R['emits'] }[S];

/** Every event type of the pipeline: those consumed and those emitted. */
export type PipelineEventType = Row['consumes'] | Row['emits'];

/** Every task state a stage works on or leaves a task in. */
export type PipelineTaskState = Row['expects'] | Row['movesTo'];

export const STAGE_NAMES: readonly StageName[] = PIPELINE.map((row) => row.stage);

export function isStageName(name: string): name is StageName {
  return (STAGE_NAMES as readonly string[]).includes(name);
}

export function rowOf<S extends StageName>(stage: S): RowOf<S> {
  return PIPELINE.find((row) => row.stage === stage) as RowOf<S>;
}

/** The stage that consumes `type`, if any (`registered` and `exported` have no consumer in the pipeline). */
export function rowConsuming(type: string): Row | undefined {
  return PIPELINE.find((row) => row.consumes === type);
}
