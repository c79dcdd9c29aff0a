// Compiled output is needed by tests that start stages as separate processes.
const { execSync } = require('child_process');
module.exports = async () => {
  execSync('npx tsc -p tsconfig.json', { stdio: 'inherit', cwd: __dirname + '/../..' });
};
