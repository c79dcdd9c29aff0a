// @ts-check
// `npm run lint`: ESLint's and typescript-eslint's recommended rules over every folder (sources,
// test/, bench/, the few CommonJS files), tuned where the code does something on purpose that a
// rule would flag. Each tuning says why.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** What Node gives a CommonJS module (there is no `globals` package among our dependencies). */
const NODE_COMMONJS_GLOBALS = {
  require: 'readonly',
  module: 'writable',
  exports: 'writable',
  __dirname: 'readonly',
  __filename: 'readonly',
  process: 'readonly',
  console: 'readonly',
  Buffer: 'readonly',
};

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', 'coverage/', 'data/'] },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      // Omitting a key by destructuring it into a throwaway name (`{ [name]: _gone, ...rest }`) is
      // how the tests drop a header; a rest sibling marks that.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true, argsIgnorePattern: '^_' }],
      // `endian === 'be' ? buf.writeUInt16BE(...) : buf.writeUInt16LE(...)` picks one of two calls.
      '@typescript-eslint/no-unused-expressions': ['error', { allowTernary: true }],
      // Cases end in `refuse(...)`, which returns `never`; this rule cannot see types and would
      // ask for a `break` after it. TypeScript's control-flow analysis is the check that can.
      'no-fallthrough': 'off',
      // The rethrows this flags translate a low-level failure (a socket, a child process, a parse)
      // into the message a user can act on, with the detail in the message (ARCHITECTURE: errors
      // carry a message, never a stack trace).
      'preserve-caught-error': 'off',
    },
  },
  {
    // Format parsers refuse descriptors carrying control characters, which takes a regex that
    // names them.
    files: ['toolkit/formats/**/*.ts'],
    rules: { 'no-control-regex': 'off' },
  },
  {
    // Where `any` is the honest type: documents parsed from XML on the wire (an EC2 answer, an
    // import manifest), walked and checked field by field; and the table of every action's
    // handler, whose request types differ. Everywhere else in the sources `any` is refused.
    files: ['cli/ec2-client.ts', 'cli/commands/conversion-tasks.ts', 'cli/commands/export-tasks.ts', 'cli/commands/export-image.ts', 'toolkit/bundle/import-manifest.ts', 'gateway/actions/index.ts', 'cli/commands/import-tasks.ts', 'gateway/actions/resources.ts', 'cli/commands/bundles.ts', 'cli/commands/bundle-tasks.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // Tests and benchmarks read what real clients answer (boto3 and AWS CLI JSON, SDK outputs,
    // parsed XML) and assert on its shape; typing every answer would restate the clients' models.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: NODE_COMMONJS_GLOBALS },
    // Plain CommonJS run by Node and jest as they are (bin/, jest.config.js, test/helpers/*.js).
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
