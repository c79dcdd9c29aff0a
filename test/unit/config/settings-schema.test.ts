import { readFileSync } from 'fs';
import { join } from 'path';
import { guestPolicyOf } from '../../../functions/validate/guest-policy';
import { DEFAULT_GUEST_POLICY } from '../../../toolkit/inspect/guest';
import { SETTINGS, SettingError, parseSettingValue, readSettings, type SettingSpec } from '../../../config/settings-schema';
import { settingsTableMarkdown } from '../../../config/settings-table';

const README = join(__dirname, '../../../README.md');

/** The Markdown table that follows `heading` in the README. */
function readmeTableAfter(heading: string): string {
  const text = readFileSync(README, 'utf8');
  const at = text.indexOf(heading);
  if (at < 0) throw new Error(`README.md has no "${heading}"`);
  const lines = text.slice(at).split('\n');
  const start = lines.findIndex((line) => line.startsWith('|'));
  const end = lines.findIndex((line, i) => i > start && !line.startsWith('|'));
  return lines.slice(start, end).join('\n');
}

describe('the README settings tables are the schema', () => {
  test.each([
    ['## Settings of `imaging serve`', 'serve'],
    ['## Settings of a stage process', 'stage'],
  ] as const)('%s', (heading, reader) => {
    // On a difference, paste settingsTableMarkdown(reader) into the README.
    expect(readmeTableAfter(heading)).toBe(settingsTableMarkdown(reader));
  });
});

describe('the schema', () => {
  test('names every variable and flag once, and every default passes its own type', () => {
    const specs = SETTINGS as readonly SettingSpec[];
    expect(new Set(specs.map((s) => s.env)).size).toBe(specs.length);
    expect(new Set(specs.map((s) => s.key)).size).toBe(specs.length);
    const flags = specs.flatMap((s) => (s.flag ? [s.flag] : []));
    expect(new Set(flags).size).toBe(flags.length);
    for (const spec of specs) {
      expect(spec.env).toMatch(/^IMAGING_[A-Z0-9_]+$/);
      if (spec.default !== undefined) expect(() => parseSettingValue(spec, spec.default!)).not.toThrow();
    }
  });
});

describe('readSettings', () => {
  const stage = { IMAGING_MONGODB_URI: 'mongodb://db', IMAGING_S3_ENDPOINT: 'http://s3:9000', IMAGING_S3_ACCESS_KEY_ID: 'k', IMAGING_S3_SECRET_ACCESS_KEY: 's' };

  test('gives typed values and defaults', () => {
    const settings = readSettings('stage', { ...stage, IMAGING_STAGE: 'Convert', IMAGING_CONCURRENCY: '3', IMAGING_S3_FORCE_PATH_STYLE: 'no', IMAGING_ALLOWED_OBJECT_HOSTS: 'A:1, b' });
    expect(settings).toMatchObject({ stage: 'convert', concurrency: 3, s3ForcePathStyle: false, allowedObjectHosts: ['a:1', 'b'], memoryLimitMb: 256, hostMode: 'jetstream', httpPort: 8080 });
    expect(settings.maxDeliver).toBeUndefined();
  });

  test.each([
    ['IMAGING_MEMORY_LIMIT_MB', 'abc', 'IMAGING_MEMORY_LIMIT_MB must be a positive integer (MiB), got "abc"'],
    ['IMAGING_MEMORY_LIMIT_MB', '1.5', 'IMAGING_MEMORY_LIMIT_MB must be a positive integer (MiB), got "1.5"'],
    ['IMAGING_HTTP_PORT', '70000', 'IMAGING_HTTP_PORT must be a port number (0-65535), got "70000"'],
    ['IMAGING_HOST_MODE', 'lambda', 'IMAGING_HOST_MODE must be one of jetstream, http, got "lambda"'],
    ['IMAGING_STAGE', 'unbundle', 'IMAGING_STAGE must be one of manifest, decrypt, convert, validate, boot-check, register, export, got "unbundle"'],
    ['IMAGING_LOG_LEVEL', 'loud', 'IMAGING_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "loud"'],
    ['IMAGING_ALLOWED_OBJECT_HOSTS', 'http://s3:9000', 'IMAGING_ALLOWED_OBJECT_HOSTS must be a comma-separated list of host[:port], got "http://s3:9000"'],
    ['IMAGING_GUEST_ALLOWED_OS', 'linux,macos', 'IMAGING_GUEST_ALLOWED_OS must be a comma-separated list of linux, windows (or none), got "linux,macos"'],
    ['IMAGING_GUEST_REQUIRE_BOOTLOADER', 'maybe', 'IMAGING_GUEST_REQUIRE_BOOTLOADER must be true or false, got "maybe"'],
  ])('refuses %s=%s in one line naming it', (name, value, message) => {
    expect(() => readSettings('stage', { ...stage, [name]: value })).toThrow(new SettingError(message));
  });

  test('the guest policy: defaults as DEFAULT_GUEST_POLICY, a list of OS families or none', () => {
    expect(guestPolicyOf(readSettings('stage', stage))).toEqual(DEFAULT_GUEST_POLICY);
    const settings = readSettings('stage', { ...stage, IMAGING_GUEST_ALLOWED_OS: ' Linux , linux', IMAGING_GUEST_REFUSE_ENCRYPTED: 'no', IMAGING_GUEST_REFUSE_MULTI_BOOT: 'false', IMAGING_GUEST_REQUIRE_BOOTLOADER: '0' });
    expect(guestPolicyOf(settings)).toEqual({ allowedFamilies: ['linux'], requireBootloader: false, refuseEncrypted: false, refuseMultiBoot: false });
    expect(readSettings('serve', {}, { guestAllowedOs: 'none' }).guestAllowedOs).toEqual([]);
  });

  test('refuses a wrong value of a serve flag, and a missing required setting', () => {
    expect(() => readSettings('serve', {}, { taskLifetimeHours: '0' })).toThrow('IMAGING_TASK_LIFETIME_HOURS must be a positive number (hours), got "0"');
    expect(readSettings('serve', {}, { taskLifetimeHours: '0.5' }).taskLifetimeHours).toBe(0.5);
    expect(() => readSettings('gateway', {})).toThrow(/^IMAGING_MONGODB_URI is not set$/);
  });
});
