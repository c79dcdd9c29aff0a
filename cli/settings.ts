/**
 * Every setting of `imaging serve`, in one table: the README's settings table is this table.
 * A value comes from the flag, else the environment variable, else the default.
 */
export interface SettingSpec {
  key: keyof ServeSettings;
  env: string;
  flag: string;
  default: string;
  meaning: string;
}

export interface ServeSettings {
  dataDir: string;
  host: string;
  port: string;
  s3Port: string;
  s3Endpoint: string;
  s3Region: string;
  s3AccessKeyId: string;
  s3SecretAccessKey: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  accountId: string;
  imageBucket: string;
  mongodbUri: string;
  mongodbDb: string;
  natsUrl: string;
  allowedObjectHosts: string;
  memoryLimitMb: string;
  uploadPollMs: string;
  taskLifetimeHours: string;
  logLevel: string;
}

export const SERVE_SETTINGS: SettingSpec[] = [
  { key: 'dataDir', env: 'IMAGING_DATA_DIR', flag: '--data-dir', default: './data', meaning: 'Where the embedded task database, the embedded S3 store and the generated credentials live.' },
  { key: 'host', env: 'IMAGING_HOST', flag: '--host', default: '127.0.0.1', meaning: 'Address the EC2 endpoint and the embedded S3 endpoint listen on.' },
  { key: 'port', env: 'IMAGING_PORT', flag: '--port', default: '8773', meaning: 'Port of the EC2 Query API endpoint.' },
  { key: 's3Port', env: 'IMAGING_S3_PORT', flag: '--s3-port', default: '8774', meaning: 'Port of the embedded S3 endpoint (only when no S3 endpoint is configured).' },
  { key: 's3Endpoint', env: 'IMAGING_S3_ENDPOINT', flag: '--s3-endpoint', default: '(embedded)', meaning: 'External S3-compatible endpoint; when set, no S3 server is embedded.' },
  { key: 's3Region', env: 'IMAGING_S3_REGION', flag: '--s3-region', default: 'us-east-1', meaning: 'Region used to sign requests to the S3 endpoint.' },
  { key: 's3AccessKeyId', env: 'IMAGING_S3_ACCESS_KEY_ID', flag: '--s3-access-key-id', default: '(the bootstrap key)', meaning: "The service's own key for the S3 endpoint." },
  { key: 's3SecretAccessKey', env: 'IMAGING_S3_SECRET_ACCESS_KEY', flag: '--s3-secret-access-key', default: '(the bootstrap secret)', meaning: "The service's own secret for the S3 endpoint." },
  { key: 'region', env: 'IMAGING_REGION', flag: '--region', default: 'us-east-1', meaning: 'Region name the EC2 endpoint answers for.' },
  { key: 'accessKeyId', env: 'IMAGING_ACCESS_KEY_ID', flag: '--access-key-id', default: '(generated once, kept in the data dir)', meaning: "Access key id of the bootstrap account." },
  { key: 'secretAccessKey', env: 'IMAGING_SECRET_ACCESS_KEY', flag: '--secret-access-key', default: '(generated once, kept in the data dir)', meaning: 'Secret access key of the bootstrap account.' },
  { key: 'accountId', env: 'IMAGING_ACCOUNT_ID', flag: '--account-id', default: '(generated once)', meaning: '12-digit account id of the bootstrap account.' },
  { key: 'imageBucket', env: 'IMAGING_IMAGE_BUCKET', flag: '--image-bucket', default: 'imaging-images', meaning: 'Bucket of the image store, where converted disks are written.' },
  { key: 'mongodbUri', env: 'IMAGING_MONGODB_URI', flag: '--mongodb-uri', default: '(embedded SQLite: <data-dir>/tasks.db)', meaning: 'MongoDB connection string for the task store; unset, tasks live in an embedded SQLite database.' },
  { key: 'mongodbDb', env: 'IMAGING_MONGODB_DB', flag: '--mongodb-db', default: 'imaging', meaning: 'MongoDB database name.' },
  { key: 'natsUrl', env: 'IMAGING_NATS_URL', flag: '--nats-url', default: '(in-process bus)', meaning: 'NATS server with JetStream; when set, events travel over it instead of in-process.' },
  { key: 'allowedObjectHosts', env: 'IMAGING_ALLOWED_OBJECT_HOSTS', flag: '--allowed-object-hosts', default: '(the S3 endpoint)', meaning: 'Comma-separated host:port list from which manifest and part URLs may be fetched.' },
  { key: 'memoryLimitMb', env: 'IMAGING_MEMORY_LIMIT_MB', flag: '--memory-limit-mb', default: '256', meaning: 'Memory bound of one conversion.' },
  { key: 'uploadPollMs', env: 'IMAGING_UPLOAD_POLL_MS', flag: '--upload-poll-ms', default: '5000', meaning: 'How often a task waiting for its upload checks again.' },
  { key: 'taskLifetimeHours', env: 'IMAGING_TASK_LIFETIME_HOURS', flag: '--task-lifetime-hours', default: '168', meaning: 'How long a task may wait for its upload before it expires.' },
  { key: 'logLevel', env: 'IMAGING_LOG_LEVEL', flag: '--log-level', default: 'info', meaning: 'Log level (fatal, error, warn, info, debug).' },
];

/** Resolves settings: flags (already parsed, camelCase keys) over environment over defaults. */
export function resolveSettings(flags: Partial<Record<keyof ServeSettings, string>>, env: NodeJS.ProcessEnv = process.env): ServeSettings {
  const out = {} as ServeSettings;
  for (const spec of SERVE_SETTINGS) {
    const fromFlag = flags[spec.key];
    const fromEnv = env[spec.env];
    out[spec.key] = fromFlag ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : spec.default.startsWith('(') ? '' : spec.default);
  }
  return out;
}
