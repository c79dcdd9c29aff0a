import { join } from 'path';

/**
 * Where the compiled service is: dist/ of the checkout, both under ts-jest (test/helpers) and
 * when a benchmark runs the compiled helpers (dist/test/helpers).
 */
export const DIST = /[\\/]dist[\\/]test[\\/]helpers$/.test(__dirname) ? join(__dirname, '../..') : join(__dirname, '../../dist');
