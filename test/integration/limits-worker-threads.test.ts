/**
 * The toolkit's CPU parallelism (IMAGING_WORKER_THREADS) caps each worker pool of the process. In
 * a file of its own: pools live as long as the module, and no other test may have started them.
 */
import { writeFileSync, readFileSync } from 'fs';
import { join } from 'path';
import { availableParallelism } from 'os';
import { readSettings } from '../../config/settings-schema';
import { applyProcessLimits } from '../../ops/process-limits';
import { createServiceMetrics } from '../../ops/metrics';
import { convertImage } from '../../toolkit/convert/convert-image';
import { FileSink } from '../../toolkit/io/file-sink';
import { FileSource } from '../../toolkit/io/file-source';
import { limitWorkerThreads, workerThreadsStarted } from '../../toolkit/workers/worker-pool';
import { seededBytes, tempDir } from '../helpers/disk-corpus';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;
const STAGE_ENV = { IMAGING_STAGE: 'convert', IMAGING_MONGODB_URI: 'mongodb://x', IMAGING_S3_ENDPOINT: 'http://s3:9000', IMAGING_S3_ACCESS_KEY_ID: 'a', IMAGING_S3_SECRET_ACCESS_KEY: 'b' };

test('worker threads: the setting caps each pool', async () => {
    expect(readSettings('stage', { ...STAGE_ENV, IMAGING_WORKER_THREADS: '1' }).workerThreads).toBe(1);
    const dir = tempDir('limits-threads-');
    const raw = join(dir, 'in.raw');
    writeFileSync(raw, seededBytes(48 * MiB, 11));
    const convert = async (name: string) => {
      const source = await FileSource.open(raw);
      await convertImage({ source, sink: await FileSink.create(join(dir, name), name), output: 'vmdk', claimedFormat: 'raw' });
      await source.close();
      expect(readFileSync(join(dir, name)).subarray(0, 4).toString('latin1')).toBe('KDMV');
    };
    applyProcessLimits(readSettings('stage', { ...STAGE_ENV, IMAGING_WORKER_THREADS: '1' }));
    await convert('one.vmdk');
    expect(workerThreadsStarted().deflate).toBe(1);
    limitWorkerThreads(undefined);
    await convert('more.vmdk');
    // Lifted, the pool grows past one where the machine has the CPUs (it is sized by them).
    if (availableParallelism() > 1) expect(workerThreadsStarted().deflate).toBeGreaterThan(1);
    // The metric shows them.
    const metrics = await createServiceMetrics({ process: 'threads' }).registry.getSingleMetricAsString('imaging_worker_threads');
    expect(metrics).toMatch(/imaging_worker_threads\{pool="deflate",process="threads"\} \d+/);
  });
