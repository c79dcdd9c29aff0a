import { readFileSync } from 'fs';
import { join } from 'path';
import { SERVE_SETTINGS, resolveSettings } from '../../../cli/settings';

test('the README documents every setting with its flag and default', () => {
  const readme = readFileSync(join(__dirname, '../../../README.md'), 'utf8');
  for (const s of SERVE_SETTINGS) {
    const row = readme.split('\n').find((line) => line.startsWith(`| \`${s.env}\` |`));
    expect(row).toBeDefined();
    expect(row).toContain(`\`${s.flag}\``);
  }
});

test('a flag wins over the environment, which wins over the default', () => {
  const env = { IMAGING_PORT: '9000', IMAGING_HOST: '0.0.0.0' };
  const settings = resolveSettings({ port: '9100' }, env);
  expect(settings.port).toBe('9100');
  expect(settings.host).toBe('0.0.0.0');
  expect(settings.dataDir).toBe('./data');
  expect(settings.s3Endpoint).toBe(''); // "(embedded)" means unset
});
