import type { CloudEvent } from 'cloudevents';
import type { S3Client } from '@aws-sdk/client-s3';
import type { TaskStore } from '../tasks/store';
import type { Delivery } from '../events/bus';
import type { ObjectStorageConfig } from '../toolkit/io/object-storage';
import type { StageName } from '../pipeline/table';
import type { GuestPolicy } from '../toolkit/inspect/guest';
import type { Attempt } from './lease';

/** Settings every stage sees. */
export interface StageConfig {
  storage: ObjectStorageConfig;
  /** Bucket where converted images (the image store) are written. */
  imageBucket: string;
  /** Hosts (host[:port]) from which manifest and part URLs may be fetched: the object-storage endpoints. */
  allowedObjectHosts: string[];
  /** How often the manifest stage re-checks for missing uploads. */
  uploadPollMs: number;
  /** Memory bound for conversion, bytes. */
  memoryLimitBytes: number;
  /** Image-store bytes one account may hold; absent, no quota. */
  accountStorageQuotaBytes?: number;
  /** The cloud's RSA private key (PEM) that unwraps bundle keys; without it bundles are refused. */
  cloudPrivateKey?: string;
  /** Register bundles whose manifest says UNSIGNED. */
  acceptUnsignedBundles?: boolean;
  /** What the validate stage refuses on a system disk (IMAGING_GUEST_*); unset: DEFAULT_GUEST_POLICY. */
  guestPolicy?: GuestPolicy;
  /** The boot-check stage's settings (IMAGING_BOOT_CHECK*); unset: on request, DEFAULT_BOOT_CHECK. */
  bootCheck?: BootCheckConfig;
  /** Largest virtual disk accepted (IMAGING_MAX_IMAGE_BYTES); unset, only the request's own bound. */
  maxImageBytes?: number;
  /** Source reads one conversion keeps in flight (IMAGING_READS_IN_FLIGHT); the toolkit's default when unset. */
  readsInFlight?: number;
  /** How long a stage's claim on a task lasts without renewal (default 60 s). */
  leaseMs?: number;
  /** Longest a handler may go without a sign of progress (IMAGING_PHASE_DEADLINE_MS; default 10 min). */
  phaseDeadlineMs?: number;
  /** The bus's ack wait when set (else the stage's row's): the heartbeat comes well within it. */
  ackWaitMs?: number;
  /** Test hook (IMAGING_TEST_EXIT_AFTER_ADVANCE): this stage's process exits between advancing a task and publishing. */
  exitAfterAdvance?: string;
}

/** When and how the boot-check stage boots a converted disk under qemu. */
export interface BootCheckConfig {
  /** off: never; on-request: imports with BootCheck=true; always: every image and instance import. */
  mode: 'off' | 'on-request' | 'always';
  timeoutMs: number;
  accelerator: 'auto' | 'kvm' | 'tcg';
  memoryMiB: number;
}

export interface Logger {
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

/** What a stage handler is given: the task store, object storage, a way to emit the next event. */
export interface StageContext {
  tasks: TaskStore;
  s3: S3Client;
  config: StageConfig;
  publish(event: CloudEvent<unknown>): Promise<void>;
  delivery: Delivery;
  log: Logger;
  /** Reports image bytes moved (metrics); absent where nothing records them. */
  recordTransfer?(transfer: StageTransfer): void;
  /** The attempt this handler is making at the task (set once it holds the task's lease). */
  attempt?: Attempt;
  /** Aborted when the attempt loses its lease to another replica. */
  signal?: AbortSignal;
}

/** Image bytes a stage moved: written to object storage, and a finished conversion's pace. */
export interface StageTransfer {
  bytesRead?: number;
  bytesWritten?: number;
  /** A whole conversion: its input format, the virtual-disk bytes it covered and how long it took. */
  conversion?: { format: string; virtualBytes: number; seconds: number };
}

/**
 * One pipeline step. The same definition runs as an HTTP CloudEvent function, as a JetStream
 * pull consumer or in-process (functions/host).
 */
export interface Stage<S extends StageName = StageName> {
  /** The stage's row in the pipeline table (pipeline/table.ts). */
  name: S;
  /** The event type this stage consumes (its row's). */
  consumes: string;
  handle(event: CloudEvent<unknown>, ctx: StageContext): Promise<void>;
}
