/**
 * Every IMAGING_* setting of every process, in one table: `imaging serve`, `imaging gateway` and
 * the stage host (functions/host/main.ts) all read their settings through it, so a value means the
 * same and is refused the same everywhere, in one line naming the variable and what it accepts.
 * The README's settings tables are this table (test/unit/config/settings-schema.test.ts).
 *
 * Adding a setting is adding a row. Imports nothing of ours but the pipeline table (stage names).
 */
import { STAGE_NAMES } from '../pipeline/table';

/** The processes that read settings. */
export type SettingReader = 'serve' | 'gateway' | 'stage';

export type SettingType =
  | { kind: 'string' }
  | { kind: 'url' }
  /** TCP port; 0 picks a free one. */
  | { kind: 'port' }
  | { kind: 'positiveInteger'; unit: string }
  /** 0 allowed (e.g. "no timeout"). */
  | { kind: 'nonNegativeInteger'; unit: string }
  /** Fractions allowed (e.g. hours). */
  | { kind: 'positiveNumber'; unit: string }
  | { kind: 'boolean' }
  | { kind: 'enum'; values: readonly string[] }
  /** Comma-separated, each one of `values`; may be empty (`none`). */
  | { kind: 'enumList'; values: readonly string[] }
  /** Comma-separated host[:port] list. */
  | { kind: 'hostList' };

export interface SettingSpec {
  /** The setting's name in code (and the `imaging serve` flag's option name). */
  readonly key: string;
  readonly env: string;
  /** The command-line flag of `imaging serve` / `imaging gateway`; settings without one are environment only. */
  readonly flag?: string;
  readonly type: SettingType;
  /** The value when nothing is given; without one the setting is unset (see `unset`). */
  readonly default?: string;
  /** What an unset setting means, as the README shows it in the default column (per process where it differs). */
  readonly unset?: string | Readonly<Partial<Record<SettingReader, string>>>;
  readonly readBy: readonly SettingReader[];
  /** Processes that refuse to start without it. */
  readonly requiredBy?: readonly SettingReader[];
  readonly meaning: string;
}

const ALL: readonly SettingReader[] = ['serve', 'gateway', 'stage'];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const SETTINGS = [
  { key: 'dataDir', env: 'IMAGING_DATA_DIR', flag: '--data-dir', type: { kind: 'string' }, default: './data', readBy: ['serve'], meaning: 'Where the embedded task database, the embedded S3 store and the generated credentials live.' },
  { key: 'host', env: 'IMAGING_HOST', flag: '--host', type: { kind: 'string' }, default: '127.0.0.1', readBy: ['serve', 'gateway'], meaning: 'Address the EC2 endpoint and the embedded S3 endpoint listen on.' },
  { key: 'port', env: 'IMAGING_PORT', flag: '--port', type: { kind: 'port' }, default: '8773', readBy: ['serve', 'gateway'], meaning: 'Port of the EC2 Query API endpoint.' },
  { key: 's3Port', env: 'IMAGING_S3_PORT', flag: '--s3-port', type: { kind: 'port' }, default: '8774', readBy: ['serve'], meaning: 'Port of the embedded S3 endpoint (only when no S3 endpoint is configured).' },
  { key: 'mongodbUri', env: 'IMAGING_MONGODB_URI', flag: '--mongodb-uri', type: { kind: 'string' }, unset: '(embedded SQLite: <data-dir>/tasks.db)', readBy: ALL, requiredBy: ['gateway', 'stage'], meaning: 'MongoDB connection string for the task store; unset, tasks live in an embedded SQLite database.' },
  { key: 'mongodbDb', env: 'IMAGING_MONGODB_DB', flag: '--mongodb-db', type: { kind: 'string' }, default: 'imaging', readBy: ALL, meaning: 'MongoDB database name.' },
  { key: 's3Endpoint', env: 'IMAGING_S3_ENDPOINT', flag: '--s3-endpoint', type: { kind: 'url' }, unset: '(embedded)', readBy: ALL, requiredBy: ['stage'], meaning: 'External S3-compatible endpoint; when set, no S3 server is embedded.' },
  { key: 's3Region', env: 'IMAGING_S3_REGION', flag: '--s3-region', type: { kind: 'string' }, default: 'us-east-1', readBy: ['serve', 'stage'], meaning: 'Region used to sign requests to the S3 endpoint.' },
  { key: 's3AccessKeyId', env: 'IMAGING_S3_ACCESS_KEY_ID', flag: '--s3-access-key-id', type: { kind: 'string' }, unset: '(embedded S3: a key generated once, kept in the data dir; else the bootstrap key)', readBy: ['serve', 'stage'], requiredBy: ['stage'], meaning: "The service's own key for the S3 endpoint." },
  { key: 's3SecretAccessKey', env: 'IMAGING_S3_SECRET_ACCESS_KEY', flag: '--s3-secret-access-key', type: { kind: 'string' }, unset: '(embedded S3: generated once, kept in the data dir; else the bootstrap secret)', readBy: ['serve', 'stage'], requiredBy: ['stage'], meaning: "The service's own secret for the S3 endpoint." },
  { key: 's3ForcePathStyle', env: 'IMAGING_S3_FORCE_PATH_STYLE', type: { kind: 'boolean' }, default: 'true', readBy: ['stage'], meaning: 'Address buckets as a path of the S3 endpoint rather than as a host name.' },
  { key: 's3ConnectTimeoutMs', env: 'IMAGING_S3_CONNECT_TIMEOUT_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '5000', readBy: ['stage'], meaning: 'Longest wait for a connection to the S3 endpoint.' },
  { key: 's3TimeoutMs', env: 'IMAGING_S3_TIMEOUT_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '60000', readBy: ['stage'], meaning: 'Longest an S3 request may go without sending or receiving a byte before it is abandoned (and retried).' },
  { key: 's3MaxAttempts', env: 'IMAGING_S3_MAX_ATTEMPTS', type: { kind: 'positiveInteger', unit: 'attempts' }, default: '5', readBy: ['stage'], meaning: "Attempts per S3 call, with the SDK's capped exponential backoff between them." },
  { key: 'region', env: 'IMAGING_REGION', flag: '--region', type: { kind: 'string' }, default: 'us-east-1', readBy: ['serve', 'gateway'], meaning: 'Region name the EC2 endpoint answers for.' },
  { key: 'accessKeyId', env: 'IMAGING_ACCESS_KEY_ID', flag: '--access-key-id', type: { kind: 'string' }, unset: '(generated once, kept in the data dir)', readBy: ['serve', 'gateway'], requiredBy: ['gateway'], meaning: 'Access key id of the bootstrap account.' },
  { key: 'secretAccessKey', env: 'IMAGING_SECRET_ACCESS_KEY', flag: '--secret-access-key', type: { kind: 'string' }, unset: '(generated once, kept in the data dir)', readBy: ['serve', 'gateway'], requiredBy: ['gateway'], meaning: 'Secret access key of the bootstrap account.' },
  { key: 'accountId', env: 'IMAGING_ACCOUNT_ID', flag: '--account-id', type: { kind: 'string' }, unset: '(generated once)', readBy: ['serve', 'gateway'], requiredBy: ['gateway'], meaning: '12-digit account id of the bootstrap account.' },
  { key: 'imageBucket', env: 'IMAGING_IMAGE_BUCKET', flag: '--image-bucket', type: { kind: 'string' }, default: 'imaging-images', readBy: ['serve', 'stage'], meaning: 'Bucket of the image store, where converted disks are written.' },
  { key: 'natsUrl', env: 'IMAGING_NATS_URL', flag: '--nats-url', type: { kind: 'string' }, unset: { serve: '(in-process bus)', stage: '(required in jetstream mode)' }, readBy: ALL, requiredBy: ['gateway'], meaning: 'NATS server with JetStream; when set, events travel over it instead of in-process.' },
  { key: 'allowedObjectHosts', env: 'IMAGING_ALLOWED_OBJECT_HOSTS', flag: '--allowed-object-hosts', type: { kind: 'hostList' }, unset: '(the S3 endpoint)', readBy: ALL, meaning: 'Comma-separated host:port list from which manifest and part URLs may be fetched.' },
  { key: 'memoryLimitMb', env: 'IMAGING_MEMORY_LIMIT_MB', flag: '--memory-limit-mb', type: { kind: 'positiveInteger', unit: 'MiB' }, default: '256', readBy: ['serve', 'stage'], meaning: 'Memory bound of one conversion.' },
  { key: 'uploadPollMs', env: 'IMAGING_UPLOAD_POLL_MS', flag: '--upload-poll-ms', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '5000', readBy: ['serve', 'stage'], meaning: 'How often a task waiting for its upload checks again.' },
  { key: 'phaseDeadlineMs', env: 'IMAGING_PHASE_DEADLINE_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '600000', readBy: ['serve', 'stage'], meaning: 'Longest a stage may work without a sign of progress (a progress report, or the end of a short step); past it the attempt is abandoned as a ServerError naming the stage, and retried.' },
  { key: 'drainDeadlineMs', env: 'IMAGING_DRAIN_DEADLINE_MS', flag: '--drain-deadline-ms', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '5000', readBy: ['serve', 'stage'], meaning: "After SIGTERM or SIGINT, how long work in flight may go on; then it is handed back (to another replica, at once) and what it wrote is removed. Keep it under the pod's terminationGracePeriodSeconds (the chart sets it so)." },
  { key: 'leaseMs', env: 'IMAGING_LEASE_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '60000', readBy: ['serve', 'stage'], meaning: "How long a stage's claim on a task lasts unless renewed (renewed every third of it while the work goes on); another replica takes the task over after it." },
  { key: 'sweepIntervalMs', env: 'IMAGING_SWEEP_INTERVAL_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '5000', readBy: ['serve', 'stage'], meaning: 'How often the sweeper looks for tasks to move on: due upload re-checks, lost events, cancellations no stage picked up.' },
  { key: 'redriveIdleMs', env: 'IMAGING_REDRIVE_IDLE_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '600000', readBy: ['serve', 'stage'], meaning: 'A task untouched this long, with no stage holding it, gets its last event published again.' },
  { key: 'janitorIntervalMs', env: 'IMAGING_JANITOR_INTERVAL_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '600000', readBy: ['serve', 'stage'], meaning: "How often the janitor (in imaging serve and every convert replica) looks under the image store's task prefixes for leftovers." },
  { key: 'leftoverAgeMs', env: 'IMAGING_LEFTOVER_AGE_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '86400000', readBy: ['serve', 'stage'], meaning: "A multipart upload or partial object under the image store's task prefixes this old, that no live attempt owns and no task keeps as its output, is aborted or deleted by the janitor." },
  { key: 'testExitAfterAdvance', env: 'IMAGING_TEST_EXIT_AFTER_ADVANCE', type: { kind: 'enum', values: STAGE_NAMES }, unset: '(never)', readBy: ['stage'], meaning: 'Test hook for fault tests: the stage process exits (code 86) right after it advances a task and before it publishes the next event.' },
  { key: 'taskLifetimeHours', env: 'IMAGING_TASK_LIFETIME_HOURS', flag: '--task-lifetime-hours', type: { kind: 'positiveNumber', unit: 'hours' }, default: '168', readBy: ['serve', 'gateway'], meaning: 'How long a task may wait for its upload before it expires.' },
  { key: 'cloudKeyFile', env: 'IMAGING_CLOUD_KEY_FILE', flag: '--cloud-key-file', type: { kind: 'string' }, unset: { serve: '(generated once: <data-dir>/cloud-key.pem)', stage: '(bundles and BundleInstance are refused)' }, readBy: ['serve', 'stage'], meaning: "The cloud's RSA private key (PEM file, a secret) that unwraps bundle keys and signs and encrypts BundleInstance's bundles; `imaging cloud-cert` prints the certificate bundlers encrypt for." },
  { key: 'acceptUnsignedBundles', env: 'IMAGING_ACCEPT_UNSIGNED_BUNDLES', flag: '--accept-unsigned-bundles', type: { kind: 'boolean' }, default: 'false', readBy: ['serve', 'stage'], meaning: 'Register bundles whose manifest says UNSIGNED (by default they are refused).' },
  { key: 'logLevel', env: 'IMAGING_LOG_LEVEL', flag: '--log-level', type: { kind: 'enum', values: LOG_LEVELS }, default: 'info', readBy: ALL, meaning: 'Log level (fatal, error, warn, info, debug).' },
  { key: 'adminPort', env: 'IMAGING_ADMIN_PORT', flag: '--admin-port', type: { kind: 'port' }, default: '8775', readBy: ALL, meaning: 'Port of the admin endpoint: /healthz, /readyz and Prometheus /metrics (listens on all interfaces).' },
  { key: 'maxOpenTasksPerAccount', env: 'IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT', flag: '--max-open-tasks-per-account', type: { kind: 'positiveInteger', unit: 'tasks' }, default: '20', readBy: ['serve', 'gateway'], meaning: 'Import tasks one account may have pending or active at once; ImportVolume, ImportImage, ImportInstance and ImportSnapshot beyond it answer ResourceLimitExceeded.' },
  { key: 'accountStorageQuotaGib', env: 'IMAGING_ACCOUNT_STORAGE_QUOTA_GIB', flag: '--account-storage-quota-gib', type: { kind: 'positiveNumber', unit: 'GiB' }, default: '1024', readBy: ['serve', 'stage'], meaning: "Image-store bytes one account may hold (its images, volumes and snapshots, and conversions under way); a conversion that would pass it fails with a ClientError naming the quota, before it writes (the image's virtual size) and while it writes." },
  { key: 'tlsCert', env: 'IMAGING_TLS_CERT', flag: '--tls-cert', type: { kind: 'string' }, unset: '(plain HTTP)', readBy: ['serve', 'gateway'], meaning: 'PEM certificate (chain) file; with IMAGING_TLS_KEY the EC2 endpoint and the embedded S3 endpoint serve HTTPS.' },
  { key: 'tlsKey', env: 'IMAGING_TLS_KEY', flag: '--tls-key', type: { kind: 'string' }, unset: '(plain HTTP)', readBy: ['serve', 'gateway'], meaning: 'PEM private key file of IMAGING_TLS_CERT.' },
  { key: 's3CaBundle', env: 'IMAGING_S3_CA_BUNDLE', flag: '--s3-ca-bundle', type: { kind: 'string' }, unset: "(Node's bundled CAs)", readBy: ALL, meaning: 'PEM file of the certificate authorities the service trusts for an https S3 endpoint (and for manifest and part URLs on it), added to the bundled ones.' },
  { key: 'ec2MaxConnections', env: 'IMAGING_EC2_MAX_CONNECTIONS', type: { kind: 'positiveInteger', unit: 'connections' }, default: '1024', readBy: ['serve', 'gateway'], meaning: 'EC2 endpoint: open connections at most, all addresses together; at the cap the connection idle longest is closed (a newcomer is refused only when all are busy).' },
  { key: 'ec2MaxConnectionsPerAddress', env: 'IMAGING_EC2_MAX_CONNECTIONS_PER_ADDRESS', type: { kind: 'positiveInteger', unit: 'connections' }, default: '256', readBy: ['serve', 'gateway'], meaning: 'EC2 endpoint: open connections at most from one remote address.' },
  { key: 'ec2HeadersTimeoutMs', env: 'IMAGING_EC2_HEADERS_TIMEOUT_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '20000', readBy: ['serve', 'gateway'], meaning: 'EC2 endpoint: time allowed to receive the headers of a request.' },
  { key: 'ec2RequestTimeoutMs', env: 'IMAGING_EC2_REQUEST_TIMEOUT_MS', type: { kind: 'nonNegativeInteger', unit: 'milliseconds' }, default: '60000', readBy: ['serve', 'gateway'], meaning: 'EC2 endpoint: time allowed to receive a whole request, body included; 0 for none.' },
  { key: 'ec2KeepAliveTimeoutMs', env: 'IMAGING_EC2_KEEP_ALIVE_TIMEOUT_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '55000', readBy: ['serve', 'gateway'], meaning: 'EC2 endpoint: how long a kept-alive connection waits for its next request.' },
  { key: 'ec2IdleTimeoutMs', env: 'IMAGING_EC2_IDLE_TIMEOUT_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '60000', readBy: ['serve', 'gateway'], meaning: 'EC2 endpoint: a connection with no traffic at all for this long is closed.' },
  { key: 's3MaxConnections', env: 'IMAGING_S3_MAX_CONNECTIONS', type: { kind: 'positiveInteger', unit: 'connections' }, default: '1024', readBy: ['serve'], meaning: 'Embedded S3 endpoint: open connections at most, all addresses together; at the cap the connection idle longest is closed (a newcomer is refused only when all are busy).' },
  { key: 's3MaxConnectionsPerAddress', env: 'IMAGING_S3_MAX_CONNECTIONS_PER_ADDRESS', type: { kind: 'positiveInteger', unit: 'connections' }, default: '256', readBy: ['serve'], meaning: 'Embedded S3 endpoint: open connections at most from one remote address.' },
  { key: 's3HeadersTimeoutMs', env: 'IMAGING_S3_HEADERS_TIMEOUT_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '20000', readBy: ['serve'], meaning: 'Embedded S3 endpoint: time allowed to receive the headers of a request.' },
  { key: 's3RequestTimeoutMs', env: 'IMAGING_S3_REQUEST_TIMEOUT_MS', type: { kind: 'nonNegativeInteger', unit: 'milliseconds' }, default: '0', readBy: ['serve'], meaning: 'Embedded S3 endpoint: time allowed to receive a whole request, body included; 0 for none.' },
  { key: 's3KeepAliveTimeoutMs', env: 'IMAGING_S3_KEEP_ALIVE_TIMEOUT_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '55000', readBy: ['serve'], meaning: 'Embedded S3 endpoint: how long a kept-alive connection waits for its next request.' },
  { key: 's3IdleTimeoutMs', env: 'IMAGING_S3_IDLE_TIMEOUT_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '60000', readBy: ['serve'], meaning: 'Embedded S3 endpoint: a connection with no traffic at all for this long is closed.' },
  { key: 'guestAllowedOs', env: 'IMAGING_GUEST_ALLOWED_OS', flag: '--guest-allowed-os', type: { kind: 'enumList', values: ['linux', 'windows'] }, default: 'linux,windows', readBy: ['serve', 'stage'], meaning: 'Operating system families an image or instance import may carry (validate stage); "none" refuses every system disk.' },
  { key: 'guestRequireBootloader', env: 'IMAGING_GUEST_REQUIRE_BOOTLOADER', flag: '--guest-require-bootloader', type: { kind: 'boolean' }, default: 'true', readBy: ['serve', 'stage'], meaning: 'Refuse an image or instance disk with neither BIOS boot code nor a UEFI loader.' },
  { key: 'guestRefuseEncrypted', env: 'IMAGING_GUEST_REFUSE_ENCRYPTED', flag: '--guest-refuse-encrypted', type: { kind: 'boolean' }, default: 'true', readBy: ['serve', 'stage'], meaning: 'Refuse an image or instance disk holding a LUKS or BitLocker volume (else a warning); data volumes are never refused for it.' },
  { key: 'guestRefuseMultiBoot', env: 'IMAGING_GUEST_REFUSE_MULTI_BOOT', flag: '--guest-refuse-multi-boot', type: { kind: 'boolean' }, default: 'true', readBy: ['serve', 'stage'], meaning: 'Refuse an image or instance disk with more than one operating system (else the first is reported).' },
  { key: 'bootCheck', env: 'IMAGING_BOOT_CHECK', flag: '--boot-check', type: { kind: 'enum', values: ['off', 'on-request', 'always'] }, default: 'on-request', readBy: ['serve', 'stage'], meaning: 'Dynamic validation (boot-check stage): on-request boots only the image and instance imports that ask with BootCheck=true; always boots every one; off boots none.' },
  { key: 'bootCheckTimeoutSeconds', env: 'IMAGING_BOOT_CHECK_TIMEOUT_SECONDS', flag: '--boot-check-timeout-seconds', type: { kind: 'positiveInteger', unit: 'seconds' }, default: '300', readBy: ['serve', 'stage'], meaning: 'How long the boot check lets a guest run before it judges how far it got.' },
  { key: 'bootCheckAccelerator', env: 'IMAGING_BOOT_CHECK_ACCELERATOR', flag: '--boot-check-accelerator', type: { kind: 'enum', values: ['auto', 'kvm', 'tcg'] }, default: 'auto', readBy: ['serve', 'stage'], meaning: 'qemu accelerator of the boot check: auto uses KVM when /dev/kvm is usable, else tcg (software emulation).' },
  { key: 'bootCheckMemoryMb', env: 'IMAGING_BOOT_CHECK_MEMORY_MB', flag: '--boot-check-memory-mb', type: { kind: 'positiveInteger', unit: 'MiB' }, default: '512', readBy: ['serve', 'stage'], meaning: 'Guest memory of the boot check.' },
  { key: 'stage', env: 'IMAGING_STAGE', type: { kind: 'enum', values: STAGE_NAMES }, unset: '(required)', readBy: ['stage'], meaning: 'The stage this process runs: a row of the pipeline table (pipeline/table.ts).' },
  { key: 'hostMode', env: 'IMAGING_HOST_MODE', type: { kind: 'enum', values: ['jetstream', 'http'] }, default: 'jetstream', readBy: ['stage'], meaning: 'jetstream: a pull consumer of IMAGING_NATS_URL; http: a CloudEvents HTTP function (Knative).' },
  { key: 'httpPort', env: 'IMAGING_HTTP_PORT', type: { kind: 'port' }, default: '8080', readBy: ['stage'], meaning: 'Port the stage host listens on in http mode.' },
  { key: 'concurrency', env: 'IMAGING_CONCURRENCY', type: { kind: 'positiveInteger', unit: 'deliveries' }, unset: "(the stage's row in pipeline/table.ts)", readBy: ['stage'], meaning: 'Deliveries one stage process works on at once: its consumer pulls no more (jetstream mode); more requests at once are answered 429 (http mode).' },
  { key: 'maxDeliver', env: 'IMAGING_MAX_DELIVER', flag: '--max-deliver', type: { kind: 'positiveInteger', unit: 'attempts' }, unset: "(the stage's row in pipeline/table.ts)", readBy: ['serve', 'stage'], meaning: 'Attempts at one event before its task is failed; the default (12) with the default back-off rides out a 5-minute outage of S3, NATS or MongoDB.' },
  { key: 'retryBackoffMs', env: 'IMAGING_RETRY_BACKOFF_MS', flag: '--retry-backoff-ms', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '1000', readBy: ['serve', 'stage'], meaning: 'Wait before the second attempt at a failed event; doubled for each further attempt, up to IMAGING_RETRY_BACKOFF_MAX_MS.' },
  { key: 'retryBackoffMaxMs', env: 'IMAGING_RETRY_BACKOFF_MAX_MS', flag: '--retry-backoff-max-ms', type: { kind: 'positiveInteger', unit: 'milliseconds' }, default: '60000', readBy: ['serve', 'stage'], meaning: 'Longest wait between two attempts at a failed event.' },
  { key: 'ackWaitMs', env: 'IMAGING_ACK_WAIT_MS', type: { kind: 'positiveInteger', unit: 'milliseconds' }, unset: "(the stage's row in pipeline/table.ts)", readBy: ['stage'], meaning: 'How long a delivery may go without a sign of life before another replica gets it (jetstream mode).' },
  { key: 'maxImageBytes', env: 'IMAGING_MAX_IMAGE_BYTES', flag: '--max-image-bytes', type: { kind: 'positiveInteger', unit: 'bytes' }, default: '17592186044416', readBy: ALL, meaning: "Largest disk accepted, in bytes of its virtual size: a request declaring more is refused at the API (InvalidParameterValue), an image found larger fails at conversion with a ClientError." },
  { key: 'scratchDir', env: 'IMAGING_SCRATCH_DIR', flag: '--scratch-dir', type: { kind: 'string' }, unset: '(the OS temp directory)', readBy: ['serve', 'stage'], meaning: 'Where work that needs local disk (an OVA written into a stream) keeps its scratch files.' },
  { key: 'scratchLimitMb', env: 'IMAGING_SCRATCH_LIMIT_MB', flag: '--scratch-limit-mb', type: { kind: 'positiveInteger', unit: 'MiB' }, default: '10240', readBy: ['serve', 'stage'], meaning: 'Scratch space one process may hold at once; work that needs more than is left fails or waits (IMAGING_SCRATCH_WHEN_FULL).' },
  { key: 'scratchWhenFull', env: 'IMAGING_SCRATCH_WHEN_FULL', flag: '--scratch-when-full', type: { kind: 'enum', values: ['fail', 'wait'] }, default: 'wait', readBy: ['serve', 'stage'], meaning: 'fail: work that finds too little scratch space left fails its delivery (retried later); wait: it waits until enough is released.' },
  { key: 'workerThreads', env: 'IMAGING_WORKER_THREADS', flag: '--worker-threads', type: { kind: 'positiveInteger', unit: 'threads' }, unset: '(the CPUs, at most 4 for inflating, 8 for deflating)', readBy: ['serve', 'stage'], meaning: 'Worker threads of each (de)compression pool of the toolkit: the CPU parallelism of one process.' },
  { key: 'readsInFlight', env: 'IMAGING_READS_IN_FLIGHT', flag: '--reads-in-flight', type: { kind: 'positiveInteger', unit: 'reads' }, default: '8', readBy: ['serve', 'stage'], meaning: 'Source reads one conversion keeps in flight at once: the I/O parallelism of the toolkit.' },
] as const satisfies readonly SettingSpec[];

type Spec = (typeof SETTINGS)[number];
export type SettingKey = Spec['key'];

type ValueOfType<T extends SettingType> = T extends { kind: 'port' | 'positiveInteger' | 'nonNegativeInteger' | 'positiveNumber' }
  ? number
  : T extends { kind: 'boolean' }
    ? boolean
    : T extends { kind: 'hostList' }
      ? string[]
      : T extends { kind: 'enum'; values: readonly (infer V)[] }
        ? V
        : T extends { kind: 'enumList'; values: readonly (infer V)[] }
          ? V[]
          : string;

/** Typed settings: a setting with a default always has a value; one without may be unset. */
export type Settings = {
  [S in Spec as S['key']]: ValueOfType<S['type']> | (S extends { default: string } ? never : undefined);
};

/** A setting has a value it does not accept, or a required one is missing: one line, naming the variable. */
export class SettingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SettingError';
  }
}

/** What a type accepts, in words: the end of a refusal message. */
export function accepts(type: SettingType): string {
  switch (type.kind) {
    case 'string':
      return 'a string';
    case 'url':
      return 'a URL';
    case 'port':
      return 'a port number (0-65535)';
    case 'positiveInteger':
      return `a positive integer (${type.unit})`;
    case 'nonNegativeInteger':
      return `a whole number, 0 or more (${type.unit})`;
    case 'positiveNumber':
      return `a positive number (${type.unit})`;
    case 'boolean':
      return 'true or false';
    case 'enum':
      return `one of ${type.values.join(', ')}`;
    case 'enumList':
      return `a comma-separated list of ${type.values.join(', ')} (or none)`;
    case 'hostList':
      return 'a comma-separated list of host[:port]';
  }
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;

/** Parses one raw value (already trimmed, non-empty) of `spec`; throws SettingError naming it. */
export function parseSettingValue(spec: SettingSpec, raw: string): string | number | boolean | string[] {
  const refuse = (): never => {
    throw new SettingError(`${spec.env} must be ${accepts(spec.type)}, got ${JSON.stringify(raw)}`);
  };
  const type = spec.type;
  switch (type.kind) {
    case 'string':
      return raw;
    case 'url':
      try {
        new URL(raw);
      } catch {
        throw new SettingError(`${spec.env} is not a URL: ${JSON.stringify(raw)}`);
      }
      return raw;
    case 'port': {
      const n = Number(raw);
      return /^\d+$/.test(raw) && n <= 65535 ? n : refuse();
    }
    case 'positiveInteger': {
      const n = Number(raw);
      return Number.isSafeInteger(n) && n > 0 ? n : refuse();
    }
    case 'nonNegativeInteger': {
      const n = Number(raw);
      return /^\d+$/.test(raw) && Number.isSafeInteger(n) ? n : refuse();
    }
    case 'positiveNumber': {
      const n = Number(raw);
      return Number.isFinite(n) && n > 0 ? n : refuse();
    }
    case 'boolean': {
      const word = raw.toLowerCase();
      if (['true', '1', 'yes'].includes(word)) return true;
      if (['false', '0', 'no'].includes(word)) return false;
      return refuse();
    }
    case 'enum': {
      const word = raw.toLowerCase();
      return type.values.includes(word) ? word : refuse();
    }
    case 'enumList': {
      if (raw.toLowerCase() === 'none') return [];
      const words = raw.split(',').map((w) => w.trim().toLowerCase()).filter((w) => w !== '');
      return words.length > 0 && words.every((w) => type.values.includes(w)) ? [...new Set(words)] : refuse();
    }
    case 'hostList': {
      const hosts = raw.split(',').map((h) => h.trim().toLowerCase()).filter((h) => h !== '');
      return hosts.length > 0 && hosts.every((h) => HOST_PORT.test(h)) ? hosts : refuse();
    }
  }
}

export function settingSpec(key: SettingKey): SettingSpec {
  return SETTINGS.find((s) => s.key === key)!;
}

type Raw = Record<string, string | undefined>;

/** The raw value of a setting: the flag, else the environment variable, else undefined. */
function rawValue(spec: SettingSpec, env: Raw, flags: Raw): string | undefined {
  for (const value of [flags[spec.key], env[spec.env]]) {
    if (value !== undefined && value.trim() !== '') return value.trim();
  }
  return undefined;
}

/**
 * The settings of one process, every one it reads validated: flags (by key) over environment over
 * defaults. A setting the process does not read keeps its default (or stays unset) unchecked.
 */
export function readSettings(reader: SettingReader, env: Raw = process.env, flags: Raw = {}): Settings {
  const out: Record<string, unknown> = {};
  const missing: string[] = [];
  for (const spec of SETTINGS as readonly SettingSpec[]) {
    const read = spec.readBy.includes(reader);
    const raw = read ? rawValue(spec, env, flags) : undefined;
    if (raw === undefined && read && spec.requiredBy?.includes(reader)) missing.push(spec.env);
    const value = raw ?? spec.default;
    out[spec.key] = value === undefined ? undefined : parseSettingValue(spec, value);
  }
  // The first one, as a person fixes them: one line, one variable.
  if (missing.length > 0) throw new SettingError(`${missing[0]} is not set`);
  return out as Settings;
}

/** The default column of the README and of help texts: the default, or what leaving it unset means. */
export function shownDefault(spec: SettingSpec, reader: SettingReader): string {
  if (spec.requiredBy?.includes(reader)) return '(required)';
  if (spec.default !== undefined) return spec.default;
  return typeof spec.unset === 'string' ? spec.unset : (spec.unset?.[reader] ?? '');
}

/** The settings a process reads, in table order (for help texts and the README). */
export function settingsReadBy(reader: SettingReader): readonly SettingSpec[] {
  return (SETTINGS as readonly SettingSpec[]).filter((s) => s.readBy.includes(reader));
}
