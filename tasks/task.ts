/**
 * The task document: one per conversion task, the single source of truth for its progress.
 * Every stage reads it before working and advances it with a compare-and-set on `version`.
 */

import type { PipelineTaskState } from '../pipeline/table';

/**
 * Where a task is: a state of the pipeline table (pipeline/table.ts), or one of the ways a task
 * ends early. `failed` is shown to EC2 clients as `cancelled` with the failure message.
 */
export type TaskState = PipelineTaskState | 'cancelling' | 'cancelled' | 'failed';

export const TERMINAL_STATES: readonly TaskState[] = ['completed', 'cancelled', 'failed'];

export type TaskKind = 'import-volume' | 'import-instance';

export type ImageFormat = 'RAW' | 'VMDK' | 'VHD';

/**
 * One disk to import, parsed once at the gateway: an ImportVolume request, or the one
 * DiskImage of an ImportInstance request. The stages need nothing else.
 */
export interface ImportVolumeRequest {
  format: ImageFormat;
  bytes: number; // Image.Bytes
  manifestUrl: string; // Image.ImportManifestUrl
  volumeSizeGiB: number; // Volume.Size
  availabilityZone?: string;
  /** The volume's description (ImportVolume Description, DiskImage.N.Description). */
  description?: string;
}

export type InstanceArchitecture = 'i386' | 'x86_64' | 'arm64' | 'x86_64_mac' | 'arm64_mac';

/** The instance half of an ImportInstance request: what the imported instance is to be. */
export interface ImportInstanceSpec {
  /** Allocated when the request is accepted and returned to the caller, as EC2 does. */
  instanceId: string;
  /** EC2's only value is Windows; Linux imports leave it out. */
  platform?: 'Windows';
  architecture: InstanceArchitecture;
  instanceType?: string;
  /** The task's (and instance's) description; the disk's own is `description` of the request. */
  description?: string;
  groupNames?: string[];
  groupIds?: string[];
  subnetId?: string;
  privateIpAddress?: string;
  /** LaunchSpecification.UserData.Data as sent (base64 by EC2 convention). */
  userData?: string;
  monitoring?: boolean;
  instanceInitiatedShutdownBehavior?: 'stop' | 'terminate';
}

/** What a task was asked to do: its disk, and for ImportInstance the instance to make of it. */
export interface TaskRequest extends ImportVolumeRequest {
  /** Present exactly when the task's kind is import-instance. */
  instance?: ImportInstanceSpec;
}

/** One part of an import manifest, as parsed from the manifest XML. */
export interface ManifestPart {
  index: number;
  start: number; // inclusive
  end: number; // inclusive
  key: string;
  headUrl: string;
  getUrl: string;
  deleteUrl?: string;
}

export interface ParsedImportManifest {
  version: string;
  fileFormat: ImageFormat;
  size: number;
  volumeSizeGiB: number;
  parts: ManifestPart[];
  selfDestructUrl?: string;
}

/** Where an object lives in the service's object storage. */
export interface StoredObject {
  bucket: string;
  key: string;
  size: number;
  sha256?: string;
}

export interface TaskArtifacts {
  manifest?: ParsedImportManifest;
  /** The verified source: the manifest's parts in order, with their sizes. */
  source?: { format: ImageFormat; size: number; parts: { getUrl: string; size: number }[] };
  /** The converted raw disk in the image store. */
  image?: StoredObject;
  validation?: { sizeBytes: number; partitionTable: 'mbr' | 'gpt' | 'none' };
  volumeId?: string;
}

export interface TaskHistoryEntry {
  at: string; // ISO time
  from: TaskState | null;
  to: TaskState;
  message?: string;
}

export interface TaskDocument {
  id: string; // import-vol-xxxxxxxx, import-i-xxxxxxxx
  kind: TaskKind;
  accountId: string;
  state: TaskState;
  statusMessage: string;
  progress: number; // 0..100
  bytesConverted: number;
  request: TaskRequest;
  artifacts: TaskArtifacts;
  history: TaskHistoryEntry[];
  createdAt: string;
  updatedAt: string;
  expiresAt: string;
  /** Set when a client asked to cancel; stages check it while they work. */
  cancelRequested?: { at: string; reason?: string };
  /**
   * The event that moved the task into its present state, written in the same compare-and-set
   * as the state: whoever finds the task without its next step running (a redelivered earlier
   * event, the sweeper) publishes it again, under its own id so JetStream drops a duplicate.
   */
  outbox?: TaskOutboxEvent;
  /** The replica working on the task now, and until when; others leave the task alone until it expires. */
  lease?: TaskLease;
  /** A task waiting (for an upload) is looked at again at this time (ISO), by the sweeper. */
  wakeAt?: string;
  /** Upload checks made so far, to space out the next one. */
  uploadChecks?: number;
  /** Optimistic concurrency: incremented by every write. */
  version: number;
}

export interface TaskOutboxEvent {
  id: string;
  type: string;
  source: string;
  data: Record<string, unknown>;
}

export interface TaskLease {
  /** Which replica holds it (host, process, random). */
  holder: string;
  stage: string;
  /** Counts the attempts at the task; a stage's outputs are written under their attempt's number. */
  epoch: number;
  expiresAt: string; // ISO
}

/** A resource record created by the register stage (volumes and instances now; images and snapshots later). */
export type ResourceRecord = VolumeRecord | InstanceRecord;

export interface VolumeRecord {
  id: string; // vol-xxxxxxxxxxxxxxxxx
  kind: 'volume';
  accountId: string;
  taskId: string;
  sizeGiB: number;
  image: StoredObject;
  availabilityZone?: string;
  createdAt: string;
}

/** An imported instance: stopped, with its volumes attached in order (the first is the root). */
export interface InstanceRecord {
  id: string; // i-xxxxxxxxxxxxxxxxx
  kind: 'instance';
  accountId: string;
  taskId: string;
  state: 'stopped';
  volumeIds: string[];
  architecture: InstanceArchitecture;
  instanceType?: string;
  platform?: 'Windows';
  availabilityZone?: string;
  description?: string;
  subnetId?: string;
  privateIpAddress?: string;
  groupNames?: string[];
  groupIds?: string[];
  userData?: string;
  monitoring?: boolean;
  instanceInitiatedShutdownBehavior?: 'stop' | 'terminate';
  createdAt: string;
}
