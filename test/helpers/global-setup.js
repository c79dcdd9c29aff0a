// Before any suite: say plainly which system tools are missing, and compile the project (suites
// that start stages or the CLI as separate processes run the compiled output). A type error
// fails the run here: ts-jest only transpiles (jest.config.js), so this is where jest itself
// sees type errors. `npm test` installs the tools first (scripts/test-setup.sh) and builds
// before jest, and says so with IMAGING_TESTS_BUILT=1, so the build is not done twice.
const { execSync } = require('child_process');
const { mkdtempSync } = require('fs');
const { tmpdir } = require('os');
const { join } = require('path');

/** Tool → the Debian package it comes in. Without qemu-io or aws, some tests would skip silently. */
const TOOLS = {
  'nats-server': 'nats-server',
  'qemu-img': 'qemu-utils',
  'qemu-io': 'qemu-utils',
  sfdisk: 'fdisk',
  'mkfs.ext4': 'e2fsprogs',
  unzip: 'unzip',
  aws: 'awscli',
  python3: 'python3',
};

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
    throw new Error(
      `missing tools: ${missing.map(([t]) => t).join(', ')}; \`npm test\` installs them (scripts/test-setup.sh), ` +
        `or install with: apt-get install ${[...new Set(missing.map(([, p]) => p))].join(' ')}`,
    );
  }
  if (process.env.IMAGING_TESTS_BUILT === '1') return;
  try {
    execSync('npx tsc -p tsconfig.json', { stdio: 'pipe', cwd: join(__dirname, '..', '..') });
  } catch (err) {
    const output = `${err.stdout || ''}${err.stderr || ''}`.trim();
    throw new Error(`the project does not compile (npx tsc -p tsconfig.json):\n${output || err.message}`, { cause: err });
  }
};
