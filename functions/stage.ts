import type { CloudEvent } from 'cloudevents';
import type { S3Client } from '@aws-sdk/client-s3';
import type { TaskStore } from '../tasks/store';
import type { Delivery } from '../events/bus';
import type { ObjectStorageConfig } from '../toolkit/io/object-storage';
import type { StageName } from '../pipeline/table';
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
  /** The cloud's RSA private key (PEM) that unwraps bundle keys; without it bundles are refused. */
  cloudPrivateKey?: string;
  /** Register bundles whose manifest says UNSIGNED. */
  acceptUnsignedBundles?: boolean;
  /** Largest virtual disk accepted (IMAGING_MAX_IMAGE_BYTES); unset, only the request's own bound. */
  maxImageBytes?: number;
  /** Source reads one conversion keeps in flight (IMAGING_READS_IN_FLIGHT); the toolkit's default when unset. */
  readsInFlight?: number;
  /** How long a stage's claim on a task lasts without renewal (default 60 s). */
  leaseMs?: number;
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
