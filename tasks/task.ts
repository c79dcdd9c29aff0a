/**
 * The task document: one per conversion task, the single source of truth for its progress.
 * Every stage reads it before working and advances it with a compare-and-set on `version`.
 */

/** Pipeline steps. `failed` is shown to EC2 clients as `cancelled` with the failure message. */
export type TaskState =
  | 'pending-upload' // waiting for the manifest and every part to answer HEAD
  | 'manifest-received'
  | 'bundle-decrypted' // for plain imports: the source is described (verified parts)
  | 'disk-converted'
  | 'validated'
  | 'completed'
  | 'cancelling'
  | 'cancelled'
  | 'failed';

export const TERMINAL_STATES: readonly TaskState[] = ['completed', 'cancelled', 'failed'];

export type TaskKind = 'import-volume' | 'import-instance';

export type ImageFormat = 'RAW' | 'VMDK' | 'VHD';

/** An ImportVolume request, parsed once at the gateway. */
export interface ImportVolumeRequest {
  format: ImageFormat;
  bytes: number; // Image.Bytes
  manifestUrl: string; // Image.ImportManifestUrl
  volumeSizeGiB: number; // Volume.Size
  availabilityZone?: string;
  description?: string;
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
  id: string; // import-vol-xxxxxxxx
  kind: TaskKind;
  accountId: string;
  state: TaskState;
  statusMessage: string;
  progress: number; // 0..100
  bytesConverted: number;
  request: ImportVolumeRequest;
  artifacts: TaskArtifacts;
  history: TaskHistoryEntry[];
  createdAt: string;
  updatedAt: string;
  expiresAt: string;
  /** Set when a client asked to cancel; stages check it while they work. */
  cancelRequested?: { at: string; reason?: string };
  /** Optimistic concurrency: incremented by every write. */
  version: number;
}

/** A resource record created by the register stage (volumes now; images and snapshots later). */
export interface ResourceRecord {
  id: string; // vol-xxxxxxxx
  kind: 'volume';
  accountId: string;
  taskId: string;
  sizeGiB: number;
  image: StoredObject;
  availabilityZone?: string;
  createdAt: string;
}
