/**
 * Tests run against the TypeScript sources through ts-jest, which only transpiles them, one file
 * at a time (isolatedModules, diagnostics off): type-checking every suite's imports again in each
 * worker would cost more than the tests. Type errors still fail the run: `npm test` runs tsc
 * before jest, and global-setup compiles the project and stops on any error when jest is run
 * alone.
 */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: { isolatedModules: true }, diagnostics: false }] },
  testTimeout: 120000,
  maxWorkers: 2,
  globalSetup: '<rootDir>/test/helpers/global-setup.js',
  globalTeardown: '<rootDir>/test/helpers/global-teardown.js',
};
