// After every suite: remove the run's temporary directory (see global-setup.js).
const { rmSync } = require('fs');

module.exports = async () => {
  const runDir = globalThis.imagingTestRunDir;
  if (runDir && !process.env.IMAGING_KEEP_TEST_FILES) rmSync(runDir, { recursive: true, force: true });
};
