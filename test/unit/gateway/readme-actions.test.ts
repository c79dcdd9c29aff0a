/**
 * The README keeps up with the gateway's action table: its "EC2 actions" section lists exactly
 * the actions in ACTIONS, and its introduction names every action that starts or changes
 * something, and points to that section for the rest.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { ACTIONS } from '../../../gateway/actions/index';

const README = readFileSync(join(__dirname, '../../../README.md'), 'utf8');
const actions = Object.keys(ACTIONS).sort();

/** The text from `heading` up to the next heading of any level. */
function section(heading: string): string {
  const at = README.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`README.md has no "${heading}"`);
  const rest = README.slice(at + heading.length + 2);
  const next = rest.search(/^#/m);
  return next < 0 ? rest : rest.slice(0, next);
}

test('the "EC2 actions" section lists every action the gateway answers, and no other', () => {
  const listed = section('## EC2 actions')
    .split('\n')
    .filter((line) => line.startsWith('- '))
    .flatMap((line) => [...line.split(':')[0].matchAll(/`(\w+)`/g)].map((m) => m[1]));
  expect(listed.length).toBeGreaterThan(0);
  expect([...listed].sort()).toEqual(actions);
  expect(new Set(listed).size).toBe(listed.length);
});

test('the introduction names every action that makes or moves something (Describe*, Cancel*, Delete* and tag calls are summed up there)', () => {
  const intro = README.slice(0, README.indexOf('\n## '));
  const main = actions.filter((action) => !/^(Describe|Cancel|Delete)/.test(action) && action !== 'CreateTags');
  expect(main).toEqual(expect.arrayContaining(['ImportInstance', 'RegisterImage', 'CopyImage', 'BundleInstance', 'DeregisterImage']));
  expect(main.filter((action) => !new RegExp(`\\b${action}\\b`).test(intro))).toEqual([]);
  expect(intro).toContain('Every action is listed under [EC2 actions](#ec2-actions)');
});
