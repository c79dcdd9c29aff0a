// Before any suite: say plainly which system tools are missing, and compile the project
// (suites that start stages as separate processes run the compiled output).
const { execSync } = require('child_process');
const { mkdtempSync } = require('fs');
const { tmpdir } = require('os');
const { join } = require('path');

const TOOLS = { 'nats-server': 'nats-server', 'qemu-img': 'qemu-utils', sfdisk: 'fdisk', 'mkfs.ext4': 'e2fsprogs', python3: 'python3' };

module.exports = async () => {
  // The AWS SDK's Node 20 notice would otherwise repeat in every child process's output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  // Every temporary file of the run (test workers and the services they start inherit TMPDIR)
  // goes under one directory that global-teardown removes: the e2e suites alone make GiBs.
  const runDir = mkdtempSync(join(tmpdir(), 'imaging-tests-'));
  process.env.TMPDIR = runDir;
  globalThis.imagingTestRunDir = runDir;
  const missing = Object.entries(TOOLS).filter(([tool]) => {
    try {
      execSync(`command -v ${tool}`, { stdio: 'ignore', shell: '/bin/sh', env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length) {
    throw new Error(`missing tools: ${missing.map(([t]) => t).join(', ')}; install with: apt-get install ${[...new Set(missing.map(([, p]) => p))].join(' ')}`);
  }
  try {
    execSync('npx tsc -p tsconfig.json', { stdio: 'pipe', cwd: `${__dirname}/../..` });
  } catch (err) {
    // Type errors are reported by the suites themselves; the emitted JavaScript is still usable.
    process.stderr.write(String(err.stdout || '').split('\n').slice(0, 20).join('\n'));
  }
};
