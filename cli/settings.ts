/**
 * The settings of `imaging serve` and `imaging gateway` as the command line sees them: the rows
 * of the one settings schema (config/settings-schema.ts) that have a flag. A value comes from the
 * flag, else the environment variable, else the default, and is refused at start when its type
 * does not accept it.
 */
import { parseSettingValue, readSettings, settingsReadBy, shownDefault, type SettingReader, type Settings } from '../config/settings-schema';

export interface SettingSpec {
  key: keyof ServeSettings;
  env: string;
  flag: string;
  /** The default as shown to users: a value, or what an unset setting means in parentheses. */
  default: string;
  meaning: string;
}

/** The raw (validated) text of every setting with a flag; typedSettings gives them their types. */
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
  adminPort: string;
  maxOpenTasksPerAccount: string;
  accountStorageQuotaGib: string;
  tlsCert: string;
  tlsKey: string;
  s3CaBundle: string;
  cloudKeyFile: string;
  acceptUnsignedBundles: string;
  maxDeliver: string;
  retryBackoffMs: string;
  retryBackoffMaxMs: string;
  drainDeadlineMs: string;
  guestAllowedOs: string;
  guestRequireBootloader: string;
  guestRefuseEncrypted: string;
  guestRefuseMultiBoot: string;
  bootCheck: string;
  bootCheckTimeoutSeconds: string;
  bootCheckAccelerator: string;
  bootCheckMemoryMb: string;
  maxImageBytes: string;
  scratchDir: string;
  scratchLimitMb: string;
  scratchWhenFull: string;
  workerThreads: string;
  readsInFlight: string;
}

export const SERVE_SETTINGS: SettingSpec[] = settingsReadBy('serve')
  .filter((s) => s.flag !== undefined)
  .map((s) => ({ key: s.key as keyof ServeSettings, env: s.env, flag: s.flag!, default: shownDefault(s, 'serve'), meaning: s.meaning }));

/**
 * Resolves settings: flags (already parsed, camelCase keys) over environment over defaults.
 * Every value is checked against its type; a wrong one is refused in one line naming it.
 */
export function resolveSettings(flags: Partial<Record<keyof ServeSettings, string>>, env: NodeJS.ProcessEnv = process.env): ServeSettings {
  const out = {} as ServeSettings;
  const specs = settingsReadBy('serve');
  for (const spec of SERVE_SETTINGS) {
    const fromFlag = flags[spec.key];
    const fromEnv = env[spec.env];
    const value = fromFlag ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : spec.default.startsWith('(') ? '' : spec.default);
    if (value.trim() !== '') parseSettingValue(specs.find((s) => s.env === spec.env)!, value.trim());
    out[spec.key] = value;
  }
  return out;
}

/** The resolved settings with their types, as the process `reader` reads them. */
export function typedSettings(settings: ServeSettings, reader: SettingReader): Settings {
  return readSettings(reader, {}, settings as unknown as Record<string, string>);
}
