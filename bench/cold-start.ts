/**
 * Cold start of the `imaging` command, whole process, against a bare `node -e 0` measured in the
 * same run: `imaging --help` and `imaging info` of a small qcow2 image (made with qemu-img).
 * Each command runs COLD_START_RUNS times (default 5), interleaved so that background load hits
 * all of them alike; the table shows the median wall time and the median CPU time (user + sys,
 * from /usr/bin/time when present), and each command's excess over bare Node.
 *
 *   npm run bench:cold-start
 */
import { execFileSync, spawnSync } from 'child_process';
import { existsSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';

const runs = Number(process.env.COLD_START_RUNS ?? 5);
const main = join(__dirname, '../cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'cold-start-'));
const image = join(dir, 'disk.qcow2');
execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '1G']);
const timeTool = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

const commands: Array<[string, string[]]> = [
  ['node -e 0', ['-e', '0']],
  ['imaging --help', [main, '--help']],
  ['imaging info disk.qcow2', [main, 'info', image]],
];

interface Sample {
  wall: number;
  cpu?: number;
}

function runOnce(args: string[]): Sample {
  const started = process.hrtime.bigint();
  const result = timeTool
    ? spawnSync(timeTool, ['-f', '%U %S', process.execPath, ...args], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] })
    : spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.status !== 0) throw new Error(`${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  if (!timeTool) return { wall };
  const [user, sys] = result.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  return { wall, cpu: user + sys };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

try {
  const samples = commands.map(() => [] as Sample[]);
  for (let round = 0; round < runs; round++) commands.forEach(([, args], i) => samples[i].push(runOnce(args)));
  const rows = commands.map(([name], i) => ({
    name,
    wall: median(samples[i].map((s) => s.wall)),
    cpu: timeTool ? median(samples[i].map((s) => s.cpu!)) : undefined,
  }));
  const base = rows[0];
  const fmt = (seconds: number | undefined): string => (seconds === undefined ? '-' : `${seconds.toFixed(3)} s`);
  process.stdout.write(`cold start, median of ${runs} (wall; CPU user+sys), excess over bare node\n`);
  for (const row of rows) {
    const excess = row === base ? '' : `  +${(row.wall - base.wall).toFixed(3)} s wall, +${row.cpu === undefined ? '-' : (row.cpu - base.cpu!).toFixed(2)} s CPU`;
    process.stdout.write(`${row.name.padEnd(26)} ${fmt(row.wall).padStart(9)}  ${fmt(row.cpu).padStart(9)}${excess}\n`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
