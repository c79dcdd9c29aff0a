/**
 * The recorder the chart contract test relies on: it records variables read by name (get, `in`),
 * not those a process only copies wholesale, and writes them when the process exits.
 */
import { spawnSync } from 'child_process';
import { readFileSync, rmSync } from 'fs';
import { join } from 'path';

const RECORDER = join(__dirname, '../../helpers/env-read-recorder.js');

test('records reads by name, not the names a copy of the whole environment touches', () => {
  const script = [
    'const a = process.env.READ_BY_NAME;',
    "const b = 'CHECKED_WITH_IN' in process.env;",
    'const copy = { ...process.env };',
    'const keys = Object.keys(process.env);',
    "setTimeout(() => { void process.env.READ_LATER; process.exit(0); }, 10);",
  ].join('\n');
  const run = spawnSync(process.execPath, ['-r', RECORDER, '-e', script], {
    env: { PATH: process.env.PATH, READ_BY_NAME: '1', CHECKED_WITH_IN: '1', ONLY_COPIED: '1', READ_LATER: '1' },
    encoding: 'utf8',
  });
  expect(run.status).toBe(0);
  const file = join('/tmp/imaging-env-reads', `${run.pid}.json`);
  const read = JSON.parse(readFileSync(file, 'utf8')) as string[];
  rmSync(file);
  expect(read).toEqual(expect.arrayContaining(['READ_BY_NAME', 'CHECKED_WITH_IN', 'READ_LATER']));
  expect(read).not.toContain('ONLY_COPIED');
});
