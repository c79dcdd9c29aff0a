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

export type TaskKind = 'import-volume' | 'import-instance' | 'import-image' | 'import-snapshot' | 'export-instance' | 'export-image' | 'register-bundle' | 'bundle-instance';

/** Export tasks: CreateInstanceExportTask's and ExportImage's, both finished by the export stage. */
export const EXPORT_TASK_KINDS: readonly TaskKind[] = ['export-instance', 'export-image'];

/** Import tasks (ImportImage, ImportSnapshot) as opposed to conversion tasks (ImportVolume, ImportInstance). */
export const IMPORT_TASK_KINDS: readonly TaskKind[] = ['import-image', 'import-snapshot'];
export const CONVERSION_TASK_KINDS: readonly TaskKind[] = ['import-volume', 'import-instance'];

/** RAW, VMDK and VHD are EC2's conversion-task formats; VHDX and OVA are ImportImage's; QCOW2 is our extension. */
export type ImageFormat = 'RAW' | 'VMDK' | 'VHD' | 'VHDX' | 'QCOW2' | 'OVA';

/** An EC2 tag. */
export interface Tag {
  key: string;
  value: string;
}

/** Where an ImportImage / ImportSnapshot disk is: an object in the caller's bucket, or a URL of the object store. */
export type ObjectSourceSpec = { bucket: string; key: string } | { url: string };

/** The image or snapshot half of an ImportImage / ImportSnapshot request. */
export interface ImportImageSpec {
  source: ObjectSourceSpec;
  /** The task's description (Description). */
  description?: string;
  /** The disk's description (DiskContainer.N.Description). */
  diskDescription?: string;
  deviceName?: string;
  architecture?: string;
  platform?: 'Linux' | 'Windows';
  bootMode?: 'legacy-bios' | 'uefi' | 'uefi-preferred';
  licenseType?: string;
  hypervisor?: string;
  /** Tags for the task (import-image-task / import-snapshot-task) and for what it creates (image / snapshot). */
  taskTags?: Tag[];
  resourceTags?: Tag[];
}

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
  /**
   * The tasks converting DiskImage.2..N, in order: import-volume tasks whose request names this
   * task in `partOf`. The instance is made once its own disk and all of them are registered.
   */
  volumeTaskIds?: string[];
}

/** The instance task a volume task converts a further disk of, and which DiskImage.N it is. */
export interface InstanceDiskRef {
  taskId: string;
  diskIndex: number;
}

export type ExportTargetEnvironment = 'citrix' | 'vmware' | 'microsoft';
export type ExportDiskImageFormat = 'VMDK' | 'VHD' | 'RAW';

/** What every export request has, parsed once at the gateway, with the source it resolved to. */
interface ExportRequestCommon {
  /** The raw image in the image store, read by the export stage. */
  source: StoredObject;
  diskImageFormat: ExportDiskImageFormat;
  containerFormat?: 'ova';
  /** For VHD: dynamic by default; fixed for TargetEnvironment microsoft or the X-ImagingVhdType extension. */
  vhdType?: 'dynamic' | 'fixed';
  s3Bucket: string;
  s3Prefix: string;
  /** `<S3Prefix><exportTaskId>.<ova|vmdk|vhd|raw>`, as EC2 names it. */
  s3Key: string;
  description?: string;
}

/** CreateInstanceExportTask: an imported instance's root volume. */
export interface InstanceExportRequest extends ExportRequestCommon {
  instanceId: string;
  /** The instance's root volume, whose raw image is exported. */
  volumeId: string;
  targetEnvironment: ExportTargetEnvironment;
}

/** ExportImage: an imported image's root snapshot. */
export interface ImageExportRequest extends ExportRequestCommon {
  imageId: string;
  /** The image's root snapshot, whose raw image is exported. */
  snapshotId: string;
  /** Accepted and reported as EC2 does; this service writes with the account's own key, not a role's. */
  roleName?: string;
}

export type ExportRequest = InstanceExportRequest | ImageExportRequest;

export function isImageExport(request: ExportRequest): request is ImageExportRequest {
  return 'imageId' in request;
}

/**
 * What a task was asked to do: its disk, and for ImportInstance the instance to make of it. An
 * export task's disk fields describe its source (RAW, the image's size, no manifest URL).
 */
export interface TaskRequest extends ImportVolumeRequest {
  /** Present exactly when the task's kind is import-instance. */
  instance?: ImportInstanceSpec;
  /** An import-volume task converting a further disk of an ImportInstance (not a conversion task of its own). */
  partOf?: InstanceDiskRef;
  /** Present exactly when the task's kind is import-image or import-snapshot. */
  importImage?: ImportImageSpec;
  /** ClientToken of the request, when the client sent one. */
  clientToken?: string;
  /** Present exactly when the task's kind is export-instance (an InstanceExportRequest) or export-image (an ImageExportRequest). */
  export?: ExportRequest;
  /** Present exactly when the task's kind is register-bundle (RegisterImage of an EC2 bundle). */
  bundle?: BundleRegistration;
  /** Present exactly when the task's kind is bundle-instance (BundleInstance; finished by the export stage). */
  bundleInstance?: BundleInstanceRequest;
  /**
   * The kernel (and ramdisk) a machine image boots with, where the validate stage reads them: a
   * partition image (artifacts.layout "partition", a bare filesystem) with a kernel associated
   * needs no boot loader of its own. Set by RegisterImage (the same as bundle.kernelId/ramdiskId)
   * and by the extension parameters of ImportImage / ImportInstance (gateway/actions/kernel-params.ts).
   */
  kernelId?: string;
  ramdiskId?: string;
  /** ImportImage / ImportInstance's extension parameter VirtualizationType (gateway/actions/kernel-params.ts). */
  virtualizationType?: 'paravirtual' | 'hvm';
  /** The layout the request declared (extension parameter Layout): the validate stage refuses a disk that is not so. */
  layout?: ImageLayout;
  /**
   * Dynamic validation asked for with the extension parameter BootCheck=true (ImportImage,
   * ImportInstance): the boot-check stage boots the converted disk under qemu.
   */
  bootCheck?: BootCheckRequest;
}

export type BundleImageType = 'machine' | 'kernel' | 'ramdisk';

/**
 * A BundleInstance, parsed once at the gateway: the instance's root volume (its raw image in
 * the image store) becomes `<s3Prefix>.manifest.xml` and `<s3Prefix>.part.NN` in the caller's
 * bucket, written with the account's own key by the export stage.
 */
export interface BundleInstanceRequest {
  instanceId: string;
  /** The instance's root volume, whose raw image is bundled. */
  volumeId: string;
  source: StoredObject;
  architecture: string;
  s3Bucket: string;
  /** Storage.S3.Prefix: the bundle's file names start with it; a '/' in it is a key "directory". */
  s3Prefix: string;
  /** Storage.S3.AWSAccessKeyId as given (one of the caller's own keys), echoed in DescribeBundleTasks. */
  awsAccessKeyId?: string;
  /** Storage.S3.UploadPolicy (base64) as given, echoed back; verified against its signature at the call. */
  uploadPolicy?: string;
}

/** How a disk image is laid out: a whole disk (partition table, boot loader) or one bare filesystem. */
export type ImageLayout = 'disk' | 'partition';

/**
 * A RegisterImage of an EC2 bundle, parsed once at the gateway. The validate stage reads
 * kernelId/ramdiskId from here: a machine image with a kernel (and ramdisk) associated boots
 * paravirtual from a bare filesystem, so layout "partition" needs no boot loader of its own.
 */
export interface BundleRegistration {
  /** The image's id (emi-/eki-/eri-), allocated when RegisterImage was accepted; its record is pending until the task ends. */
  imageId: string;
  /** What the gateway read in the manifest; the manifest stage refuses a manifest that says otherwise by then. */
  imageType: BundleImageType;
  /** ImageLocation: bucket and key of the manifest, read with the account's own object-storage key. */
  bucket: string;
  manifestKey: string;
  name: string;
  description?: string;
  architecture: string;
  kernelId?: string;
  ramdiskId?: string;
  rootDeviceName: string;
  blockDeviceMappings: { deviceName: string; virtualName?: string; noDevice?: boolean }[];
  virtualizationType: 'paravirtual' | 'hvm';
}

/** The checked facts of a bundle manifest that the decrypt stage acts on (its signature verified by then). */
export interface VerifiedBundle {
  imageType: BundleImageType;
  /** The image file's size once unbundled, and the SHA-1 of the tar stream, as the manifest declares them. */
  size: number;
  tarSha1: string;
  ec2EncryptedKey: string;
  ec2EncryptedIv: string;
  /** Parts in order, as keys of the manifest's bucket, with their SHA-1s. */
  parts: { index: number; key: string; sha1: string }[];
  /** Who signed: the certificate's fingerprint, or "UNSIGNED" when unsigned bundles are accepted. */
  signedBy: string;
}

/**
 * How an imported disk boots, as ImportImage / ImportInstance's extension parameters KernelId,
 * RamdiskId, VirtualizationType and Layout give it; kept on the request (TaskRequest) itself.
 */
export type BootImageRequest = Pick<TaskRequest, 'kernelId' | 'ramdiskId' | 'virtualizationType' | 'layout'>;

/** What an import asked of the boot check (extension parameters BootCheck and BootCheckMarker). */
export interface BootCheckRequest {
  /** A line on the serial console that means the guest is up; default a login prompt or cloud-init. */
  marker?: string;
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

/**
 * What the validate stage found on the converted disk: the guest inspector's report
 * (toolkit/inspect/guest.ts) in compact form. Plain data, so that tasks/ needs no toolkit types.
 */
export interface ValidationReport {
  sizeBytes: number;
  partitionTable: 'mbr' | 'gpt' | 'none';
  /** How the disk was judged: system (an image or instance root: it must boot) or data (a volume, a snapshot). */
  purpose?: 'system' | 'data';
  os?: { family: string; distribution?: string; version?: string; prettyName?: string; location: string };
  kernels?: { path: string; version?: string; architecture?: string; initramfs?: string }[];
  bootMode?: string;
  architecture?: string;
  filesystems?: { type: string; partition?: number; label?: string; uuid?: string; role?: string; mountpoint?: string; encrypted?: boolean }[];
  findings?: { severity: 'error' | 'warning' | 'info'; code: string; message: string }[];
  verdict?: { accepted: boolean; message: string };
  /** Bytes read from the image store to make the report. */
  bytesRead?: number;
}

/** The boot-check stage's verdict: how far the guest got under qemu and the last console lines. */
export interface BootCheckResult {
  booted: boolean;
  /** none, firmware, bootloader, kernel, init, marker. */
  reached: string;
  message: string;
  accelerator: string;
  elapsedMs: number;
  /** The last lines of the serial console. */
  console: string[];
}

export interface TaskArtifacts {
  manifest?: ParsedImportManifest;
  /** The verified source: the manifest's parts in order, with their sizes. */
  source?: { format: ImageFormat; size: number; parts: { getUrl: string; size: number }[] };
  /** The converted raw disk in the image store. */
  image?: StoredObject;
  validation?: ValidationReport;
  /** What the boot-check stage saw when it booted the disk (dynamic validation), when it ran. */
  bootCheck?: BootCheckResult;
  volumeId?: string;
  /** What an import-image / import-snapshot task created. */
  snapshotId?: string;
  imageId?: string;
  /** An export's output, in the user's bucket. */
  exported?: StoredObject;
  /** What BundleInstance wrote into the user's bucket: the manifest's key, its parts, their total size. */
  bundled?: { bucket: string; manifestKey: string; partKeys: string[]; bundledSize: number };
  /** A bundle's manifest, verified by the manifest stage. */
  bundle?: VerifiedBundle;
  /** Whether the unbundled image is a whole disk or a bare filesystem (bundles; recorded by the decrypt stage). */
  layout?: ImageLayout;
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
  /** Tags of the task itself (CreateTags on an import task id). */
  tags?: Tag[];
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

/** A resource record created by the register stage. */
export type ResourceRecord = VolumeRecord | InstanceRecord | SnapshotRecord | ImageRecord | SigningCertificateRecord;
export type ResourceKind = ResourceRecord['kind'];

/** A snapshot made by ImportImage / ImportSnapshot: the converted raw disk in the image store. */
export interface SnapshotRecord {
  id: string; // snap-xxxxxxxxxxxxxxxxx
  kind: 'snapshot';
  accountId: string;
  taskId: string;
  sizeGiB: number;
  image: StoredObject;
  description?: string;
  tags?: Tag[];
  createdAt: string;
}

/**
 * A certificate an account signs its bundle manifests with (`imaging cert add`); the manifest
 * stage verifies a bundle against those of the bundle's owner. Kept as a resource record.
 */
export interface SigningCertificateRecord {
  id: string; // cert-<first 17 hex digits of the SHA-256 fingerprint>
  kind: 'signing-certificate';
  accountId: string;
  pem: string;
  /** SHA-256 fingerprint of the DER certificate, colon-separated upper-case hex, as openssl prints it. */
  fingerprint: string;
  subject: string;
  notAfter: string;
  tags?: Tag[];
  createdAt: string;
}

/**
 * An image. ImportImage makes an EBS-backed machine image whose root device is one snapshot;
 * RegisterImage of a bundle makes an instance-store image (machine, kernel or ramdisk) whose
 * bytes are one raw object of the image store, pending until its task ends.
 */
export interface ImageRecord {
  id: string; // ami-xxxxxxxxxxxxxxxxx
  kind: 'image';
  accountId: string;
  taskId: string;
  name: string;
  description?: string;
  architecture: string;
  platform?: 'Windows';
  bootMode?: string;
  rootDeviceName: string;
  snapshotIds: string[];
  sizeGiB: number;
  tags?: Tag[];
  createdAt: string;
  /** Absent means machine (ImportImage). */
  imageType?: BundleImageType;
  /** Absent means available (ImportImage records are written when the image is done). */
  state?: 'pending' | 'available' | 'failed';
  stateReason?: { code: string; message: string };
  kernelId?: string;
  ramdiskId?: string;
  layout?: ImageLayout;
  /** Absent means ebs. */
  rootDeviceType?: 'ebs' | 'instance-store';
  /** RegisterImage's ImageLocation (bucket/key of the manifest). */
  imageLocation?: string;
  virtualizationType?: 'paravirtual' | 'hvm';
  blockDeviceMappings?: { deviceName: string; virtualName?: string; noDevice?: boolean }[];
  /** An instance-store image's bytes in the image store (raw), set when it becomes available. */
  image?: StoredObject;
  /** The ClientToken of the CopyImage that made the image, so that a retry of that call is known. */
  clientToken?: string;
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

export interface VolumeRecord {
  id: string; // vol-xxxxxxxxxxxxxxxxx
  kind: 'volume';
  accountId: string;
  taskId: string;
  sizeGiB: number;
  image: StoredObject;
  availabilityZone?: string;
  tags?: Tag[];
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
  /** The boot disk's kernel and ramdisk, virtualization and layout (ImportInstance's extension parameters, and what validate found). */
  kernelId?: string;
  ramdiskId?: string;
  virtualizationType?: 'paravirtual' | 'hvm';
  layout?: ImageLayout;
  tags?: Tag[];
  createdAt: string;
}
