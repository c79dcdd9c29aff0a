/**
 * Stage dependencies from environment variables: how a stage container is configured. The
 * settings and their rules are the one schema's (config/settings-schema.ts).
 */
import pino from 'pino';
import { LOG_REDACTION_OPTIONS } from '../../ops/log-redaction';
import { openTaskStore } from '../../tasks/open-store';
import { makeS3Client, type ObjectStorageConfig } from '../../toolkit/io/object-storage';
import { hostOf } from '../../toolkit/io/url-policy';
import { readFileSync } from 'fs';
import { readSettings, SettingError, type Settings } from '../../config/settings-schema';
import { trustCaBundle } from '../../toolkit/io/trusted-ca';
import type { StageConfig } from '../stage';
import { guestPolicyOf } from '../validate/guest-policy';
import { bootCheckConfigOf } from '../boot-check/boot-check-config';
import type { StageDeps } from './deps';
import { readCloudKey } from '../../toolkit/bundle/cloud-key';

type Env = Record<string, string | undefined>;

/** A setting is missing or malformed; the message is one line naming the variable. */
export { SettingError as ConfigError };

/** Every setting of a stage process, validated; throws ConfigError (SettingError) in one line. */
export function stageSettingsFromEnv(env: Env = process.env): Settings {
  return readSettings('stage', env);
}

export async function stageDepsFromEnv(env: Env = process.env): Promise<StageDeps> {
  const settings = stageSettingsFromEnv(env);
  const config = stageConfigOf(settings);
  // A private CA of an https S3 endpoint: trusted by every path to object storage in this process.
  if (settings.s3CaBundle) trustCaBundle(readFileSync(settings.s3CaBundle, 'utf8'), `IMAGING_S3_CA_BUNDLE (${settings.s3CaBundle})`);
  const tasks = await openTaskStore(settings.mongodbUri!, { mongoDbName: settings.mongodbDb });
  return {
    tasks,
    s3: makeS3Client(config.storage),
    config,
    log: pino({ name: 'imaging', level: settings.logLevel, ...LOG_REDACTION_OPTIONS }),
  };
}

/** The part of the configuration that needs no connection; checked before anything is opened. */
export function stageConfigFromEnv(env: Env = process.env): StageConfig {
  return stageConfigOf(stageSettingsFromEnv(env));
}

function stageConfigOf(settings: Settings): StageConfig {
  // readSettings has refused a stage process without these.
  const endpoint = settings.s3Endpoint!;
  const storage: ObjectStorageConfig = {
    endpoint,
    region: settings.s3Region,
    accessKeyId: settings.s3AccessKeyId!,
    secretAccessKey: settings.s3SecretAccessKey!,
    forcePathStyle: settings.s3ForcePathStyle,
    connectionTimeoutMs: settings.s3ConnectTimeoutMs,
    requestTimeoutMs: settings.s3TimeoutMs,
    maxAttempts: settings.s3MaxAttempts,
  };
  return {
    storage,
    imageBucket: settings.imageBucket,
    // By default only the service's own object storage may be fetched from (no SSRF elsewhere).
    allowedObjectHosts: settings.allowedObjectHosts ?? [hostOf(endpoint)],
    uploadPollMs: settings.uploadPollMs,
    memoryLimitBytes: settings.memoryLimitMb * 1024 * 1024,
    accountStorageQuotaBytes: Math.floor(settings.accountStorageQuotaGib * 1024 ** 3),
    ...(settings.cloudKeyFile ? { cloudPrivateKey: readCloudKey(settings.cloudKeyFile) } : {}),
    ...(settings.acceptUnsignedBundles ? { acceptUnsignedBundles: true } : {}),
    guestPolicy: guestPolicyOf(settings),
    bootCheck: bootCheckConfigOf(settings),
    maxImageBytes: settings.maxImageBytes,
    readsInFlight: settings.readsInFlight,
    leaseMs: settings.leaseMs,
    phaseDeadlineMs: settings.phaseDeadlineMs,
    ...(settings.ackWaitMs ? { ackWaitMs: settings.ackWaitMs } : {}),
    ...(settings.testExitAfterAdvance ? { exitAfterAdvance: settings.testExitAfterAdvance } : {}),
  };
}
