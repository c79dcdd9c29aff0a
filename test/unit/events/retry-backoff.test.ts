import { DEFAULT_RETRY_BACKOFF, OUTAGE_TO_RIDE_OUT_MS, retryBudgetMs, retryDelayMs } from '../../../events/retry-backoff';
import { PIPELINE } from '../../../pipeline/table';
import { readSettings } from '../../../config/settings-schema';

describe('retry back-off', () => {
  test('doubles from the first wait and stops at the cap', () => {
    const backoff = { firstMs: 1000, maxMs: 60_000 };
    expect([1, 2, 3, 4, 5, 6, 7, 8, 40, 1000].map((a) => retryDelayMs(backoff, a))).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000]);
    expect(retryBudgetMs(backoff, 1)).toBe(0);
    expect(retryBudgetMs(backoff, 4)).toBe(7000);
  });

  test.each(PIPELINE.map((row) => [row.stage, row.maxDeliver] as const))('by default the %s stage rides out a 5-minute outage of S3, NATS or MongoDB', (_stage, maxDeliver) => {
    expect(retryBudgetMs(DEFAULT_RETRY_BACKOFF, maxDeliver)).toBeGreaterThanOrEqual(OUTAGE_TO_RIDE_OUT_MS);
  });

  test('the settings default to the same back-off', () => {
    const settings = readSettings('stage', { IMAGING_MONGODB_URI: 'mongodb://db', IMAGING_S3_ENDPOINT: 'http://s3:9000', IMAGING_S3_ACCESS_KEY_ID: 'k', IMAGING_S3_SECRET_ACCESS_KEY: 's' });
    expect({ firstMs: settings.retryBackoffMs, maxMs: settings.retryBackoffMaxMs }).toEqual(DEFAULT_RETRY_BACKOFF);
  });
});
