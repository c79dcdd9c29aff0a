/**
 * The `imaging` command as a whole process (the compiled dist/cli/main.js, built by global-setup):
 * exit codes and messages as a user sees them, and what it loads at start. A command loads what
 * it needs when it runs, so `--help` and `info` start about as fast as Node itself; which modules
 * load is checked here rather than the time, which a shared machine cannot measure reliably.
 */
import { spawnSync } from 'child_process';
import { existsSync } from 'fs';
import { join } from 'path';
import { qemuImg, tempDir } from '../../helpers/disk-corpus';

const MAIN = join(__dirname, '..', '..', '..', 'dist', 'cli', 'main.js');

function imaging(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * The modules (file paths) the command has loaded when it exits. The preload lists them from
 * require's cache at exit, on stderr after a marker.
 */
function modulesLoadedBy(...args: string[]): string[] {
  const preload = "process.on('exit', () => process.stderr.write('\\nLOADED ' + JSON.stringify(Object.keys(require.cache))))";
  const result = spawnSync(process.execPath, ['-e', `${preload}; require(${JSON.stringify(MAIN)})`, MAIN, ...args], { encoding: 'utf8' });
  const marker = result.stderr.lastIndexOf('\nLOADED ');
  if (marker < 0) throw new Error(`no module list from imaging ${args.join(' ')}: ${result.stderr}`);
  return JSON.parse(result.stderr.slice(marker + '\nLOADED '.length)) as string[];
}

/** Packages a start must not load: the service's and the S3 client's, none of which info or --help needs. */
const HEAVY = /node_modules\/(@aws-sdk|@smithy|pino|mongodb|nats|better-sqlite3|s3rver|cli-progress|undici|@google-cloud|cloudevents|prom-client)\//;

describe('imaging (whole process)', () => {
  let dir: string;
  let qcow2: string;

  beforeAll(() => {
    expect(existsSync(MAIN)).toBe(true);
    dir = tempDir();
    qcow2 = join(dir, 'disk.qcow2');
    qemuImg('create', '-f', 'qcow2', qcow2, '16M');
  });

  it('convert -f vmdk of a qcow2 file exits non-zero with the mismatch message', () => {
    const result = imaging('convert', '-f', 'vmdk', qcow2, join(dir, 'out.raw'));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe('error: the image was declared VMDK but is a QCOW2 (v3) file; declare the format it really has [check: format-mismatch]\n');
    expect(existsSync(join(dir, 'out.raw'))).toBe(false);
  });

  it('--help lists the commands, and the toolkit commands show -f/--format', () => {
    const help = imaging('--help');
    expect(help.status).toBe(0);
    for (const command of ['serve', 'import-volume', 'describe-conversion-tasks', 'info', 'convert', 'check']) expect(help.stdout).toContain(command);
    for (const command of ['info', 'convert', 'check']) expect(imaging(command, '--help').stdout).toMatch(/-f, --format <format>/);
  });

  it('--help and info load none of the AWS SDK, pino, mongodb, nats, SQLite or the progress bar', () => {
    const atHelp = modulesLoadedBy('--help');
    expect(atHelp.filter((path) => HEAVY.test(path))).toEqual([]);
    const atInfo = modulesLoadedBy('info', qcow2);
    expect(atInfo.some((path) => path.endsWith(join('formats', 'qcow2', 'reader.js')))).toBe(true);
    expect(atInfo.filter((path) => HEAVY.test(path))).toEqual([]);
    // Nor does --help load the toolkit.
    expect(atHelp.filter((path) => path.includes(`${join('dist', 'toolkit')}`))).toEqual([]);
  });
});
