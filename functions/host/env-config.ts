/** Stage dependencies from environment variables: how a stage container is configured. */
import pino from 'pino';
import { openTaskStore } from '../../tasks/open-store';
import { makeS3Client, type ObjectStorageConfig } from '../../toolkit/io/object-storage';
import { hostOf, parseHostList } from '../../toolkit/io/url-policy';
import type { StageConfig } from '../stage';
import type { StageDeps } from './deps';

type Env = Record<string, string | undefined>;

/** A setting is missing or malformed; the message is one line naming the variable. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export async function stageDepsFromEnv(env: Env = process.env): Promise<StageDeps> {
  const config = stageConfigFromEnv(env);
  const mongoUri = required(env, 'IMAGING_MONGODB_URI');
  const tasks = await openTaskStore(mongoUri, { mongoDbName: env.IMAGING_MONGODB_DB || 'imaging' });
  return {
    tasks,
    s3: makeS3Client(config.storage),
    config,
    log: pino({ name: 'imaging', level: env.IMAGING_LOG_LEVEL || 'info' }),
  };
}

/** The part of the configuration that needs no connection; checked before anything is opened. */
export function stageConfigFromEnv(env: Env = process.env): StageConfig {
  required(env, 'IMAGING_MONGODB_URI');
  const endpoint = required(env, 'IMAGING_S3_ENDPOINT');
  try {
    new URL(endpoint);
  } catch {
    throw new ConfigError(`IMAGING_S3_ENDPOINT is not a URL: ${endpoint}`);
  }
  const storage: ObjectStorageConfig = {
    endpoint,
    region: env.IMAGING_S3_REGION || 'us-east-1',
    accessKeyId: required(env, 'IMAGING_S3_ACCESS_KEY_ID'),
    secretAccessKey: required(env, 'IMAGING_S3_SECRET_ACCESS_KEY'),
    forcePathStyle: boolean(env, 'IMAGING_S3_FORCE_PATH_STYLE', true),
  };
  const allowed = parseHostList(env.IMAGING_ALLOWED_OBJECT_HOSTS ?? '');
  return {
    storage,
    imageBucket: env.IMAGING_IMAGE_BUCKET || 'imaging-images',
    // By default only the service's own object storage may be fetched from (no SSRF elsewhere).
    allowedObjectHosts: allowed.length > 0 ? allowed : [hostOf(endpoint)],
    uploadPollMs: positiveInteger(env, 'IMAGING_UPLOAD_POLL_MS', 5000),
    memoryLimitBytes: positiveInteger(env, 'IMAGING_MEMORY_LIMIT_MB', 256) * 1024 * 1024,
  };
}

export function required(env: Env, name: string): string {
  const value = env[name];
  if (value === undefined || value.trim() === '') throw new ConfigError(`${name} is not set`);
  return value.trim();
}

export function positiveInteger(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value <= 0) throw new ConfigError(`${name} must be a positive integer, got "${raw}"`);
  return value;
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['true', '1', 'yes'].includes(raw)) return true;
  if (['false', '0', 'no'].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${env[name]}"`);
}
