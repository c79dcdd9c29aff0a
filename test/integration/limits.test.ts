/**
 * The service's limits, each from the one settings schema, each answered with an error that says
 * which limit and which setting: concurrent operations per stage replica (http mode: 429),
 * maximum image size (at the API when declared, at conversion when found), scratch space (fail
 * or wait, in the configured place) and the toolkit's CPU and I/O parallelism.
 */
import { createReadStream, readdirSync, statSync, truncateSync, writeFileSync } from 'fs';
import { join } from 'path';
import { CloudEvent, HTTP } from 'cloudevents';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import pino from 'pino';
import { readSettings } from '../../config/settings-schema';
import { stageConfigFromEnv } from '../../functions/host/env-config';
import { startHttpStage } from '../../functions/host/http-function';
import type { Stage } from '../../functions/stage';
import { createServiceMetrics } from '../../ops/metrics';
import { applyProcessLimits } from '../../ops/process-limits';
import { convertImage } from '../../toolkit/convert/convert-image';
import { FileSource } from '../../toolkit/io/file-source';
import { FileSink } from '../../toolkit/io/file-sink';
import { processScratchSpace, ScratchSpace, ScratchSpaceError, setProcessScratchSpace } from '../../toolkit/io/scratch-space';
import type { ByteSink } from '../../toolkit/io/sink';
import type { RandomAccessSource } from '../../toolkit/io/source';
import { seededBytes, tempDir } from '../helpers/disk-corpus';
import { boto3Call, Ec2ClientError } from '../helpers/ec2-clients';
import { clientFor, startTestService, waitForImportTask } from '../e2e/import-driver';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;
const STAGE_ENV = { IMAGING_STAGE: 'convert', IMAGING_MONGODB_URI: 'mongodb://x', IMAGING_S3_ENDPOINT: 'http://s3:9000', IMAGING_S3_ACCESS_KEY_ID: 'a', IMAGING_S3_SECRET_ACCESS_KEY: 'b' };

/** A sink that cannot patch its head (it only passes bytes on), so an OVA goes through scratch space. */
function streamOnlySink(inner: FileSink): ByteSink {
  return { name: inner.name, write: (data) => inner.write(data), writeZeros: (n) => inner.writeZeros(n), finish: () => inner.finish(), abort: () => inner.abort() } as ByteSink;
}

describe('concurrent operations per stage replica (IMAGING_CONCURRENCY)', () => {
  test('http mode: an event over the limit is answered 429 naming the limit; it is taken once a slot is free', async () => {
    const releases: (() => void)[] = [];
    const stage: Stage = {
      name: 'convert',
      consumes: 'io.imaging.bundle-decrypted',
      handle: () => new Promise<void>((resolve) => releases.push(resolve)),
    };
    const metrics = createServiceMetrics({ process: 'limits-test' });
    const deps = { tasks: {} as never, s3: {} as never, config: {} as never, log: pino({ level: 'silent' }), metrics };
    const post = (url: string, id: string) => {
      const message = HTTP.binary(new CloudEvent({ id, type: 'io.imaging.bundle-decrypted', source: 'test', data: { taskId: id } }));
      return fetch(url, { method: 'POST', headers: message.headers as Record<string, string>, body: message.body as string });
    };
    const limited = await startHttpStage(stage, deps, 0, async () => undefined, '127.0.0.1', 1);
    const unlimited = await startHttpStage(stage, deps, 0, async () => undefined, '127.0.0.1');
    try {
      const first = post(limited.url, 'e1');
      while (releases.length < 1) await new Promise((r) => setTimeout(r, 20));
      const refused = await post(limited.url, 'e2');
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(await refused.text()).toBe('stage convert is working on 1 events, its limit (IMAGING_CONCURRENCY=1); send this one again later');
      releases.shift()!();
      expect((await first).status).toBe(204);
      const again = post(limited.url, 'e2');
      while (releases.length < 1) await new Promise((r) => setTimeout(r, 20));
      releases.shift()!();
      expect((await again).status).toBe(204);
      expect(await metrics.limitRefusals.get().then((m) => m.values.find((v) => v.labels.limit === 'concurrency')?.value)).toBe(1);

      // Without a limit both are worked on at once: the refusal above came from the limit.
      const both = [post(unlimited.url, 'u1'), post(unlimited.url, 'u2')];
      while (releases.length < 2) await new Promise((r) => setTimeout(r, 20));
      releases.splice(0).forEach((release) => release());
      expect((await Promise.all(both)).map((r) => r.status)).toEqual([204, 204]);
    } finally {
      releases.forEach((release) => release());
      await limited.close();
      await unlimited.close();
    }
  });

  test('the setting reaches the stage host, and a bad value is refused in one line', () => {
    expect(readSettings('stage', { ...STAGE_ENV, IMAGING_CONCURRENCY: '3' }).concurrency).toBe(3);
    expect(() => readSettings('stage', { ...STAGE_ENV, IMAGING_CONCURRENCY: '0' })).toThrow('IMAGING_CONCURRENCY must be a positive integer (deliveries), got "0"');
  });
});

describe('maximum image size (IMAGING_MAX_IMAGE_BYTES)', () => {
  test('refused at the API when declared, and at conversion with a ClientError when found', async () => {
    const dir = tempDir('limits-size-');
    const limit = 64 * MiB;
    const { service, endpoints } = await startTestService(dir, { maxImageBytes: String(limit) });
    try {
      // Declared: ImportVolume's Volume.Size (1 GiB) is over the limit.
      const refused = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportVolume', {
        Image: { Format: 'RAW', Bytes: MiB, ImportManifestUrl: new URL('b/manifest.xml', endpoints.s3).href },
        Volume: { Size: 1 },
        AvailabilityZone: 'local-1a',
      }).catch((e: Ec2ClientError) => e);
      expect(refused).toBeInstanceOf(Ec2ClientError);
      expect((refused as Ec2ClientError).code).toBe('InvalidParameterValue');
      expect((refused as Ec2ClientError).message).toContain(`This service accepts disks of at most ${limit} bytes (IMAGING_MAX_IMAGE_BYTES).`);

      // Found: ImportImage declares no size; the RAW disk (128 MiB) is refused when converted.
      const disk = join(dir, 'big.raw');
      writeFileSync(disk, seededBytes(MiB, 3));
      truncateSync(disk, 2 * limit);
      const { s3 } = await clientFor(endpoints);
      await s3.send(new CreateBucketCommand({ Bucket: 'limits' }));
      await s3.send(new PutObjectCommand({ Bucket: 'limits', Key: 'big.raw', Body: createReadStream(disk), ContentLength: statSync(disk).size }));
      const out = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportImage', { DiskContainers: [{ Format: 'RAW', UserBucket: { S3Bucket: 'limits', S3Key: 'big.raw' } }] });
      const task = await waitForImportTask(endpoints, 'DescribeImportImageTasks', out.ImportTaskId, { timeoutMs: 60_000 });
      expect(task.Status).toBe('deleted');
      expect(task.StatusMessage).toBe(`ClientError: the disk is ${2 * limit} bytes, larger than the ${limit}-byte limit (IMAGING_MAX_IMAGE_BYTES)`);
    } finally {
      await service.stop();
    }
  });
});

describe('scratch space (IMAGING_SCRATCH_DIR, IMAGING_SCRATCH_LIMIT_MB, IMAGING_SCRATCH_WHEN_FULL)', () => {
  const names = { dir: 'IMAGING_SCRATCH_DIR', limit: 'IMAGING_SCRATCH_LIMIT_MB', whenFull: 'IMAGING_SCRATCH_WHEN_FULL' };
  /** An 8 MiB disk with data, as an OVA into a stream-only sink: the VMDK goes through scratch space first. */
  async function writeOva(dir: string, scratch: ScratchSpace, name: string): Promise<number> {
    const raw = join(dir, `${name}.raw`);
    writeFileSync(raw, seededBytes(8 * MiB, name.length));
    const source = await FileSource.open(raw);
    const sink = streamOnlySink(await FileSink.create(join(dir, `${name}.ova`), `${name}.ova`));
    setProcessScratchSpace(scratch);
    try {
      await convertImage({ source, sink, output: 'ova', claimedFormat: 'raw' });
    } finally {
      await source.close();
    }
    return statSync(join(dir, `${name}.ova`)).size;
  }

  test('the settings make the process scratch space, in the configured place', async () => {
    const dir = tempDir('limits-scratch-place-');
    applyProcessLimits(readSettings('stage', { ...STAGE_ENV, IMAGING_SCRATCH_DIR: dir, IMAGING_SCRATCH_LIMIT_MB: '100', IMAGING_SCRATCH_WHEN_FULL: 'fail' }));
    const space = processScratchSpace();
    expect(space.dir).toBe(dir);
    const held = await space.reserve(60 * MiB, 'the first');
    expect(held.dir.startsWith(join(dir, 'imaging-scratch-'))).toBe(true);
    expect(readdirSync(dir)).toHaveLength(1);
    await expect(space.reserve(60 * MiB, 'the second')).rejects.toThrow(
      'the second needs 60 MiB of scratch space and 60 MiB of the 100 MiB allowed (IMAGING_SCRATCH_LIMIT_MB) is in use; failing this attempt (IMAGING_SCRATCH_WHEN_FULL=fail)',
    );
    await held.release();
    expect(readdirSync(dir)).toEqual([]);
    applyProcessLimits(readSettings('stage', STAGE_ENV));
  });

  test('more than the whole limit fails at once, whatever the mode', async () => {
    const dir = tempDir('limits-scratch-whole-');
    const space = new ScratchSpace({ dir, limitBytes: 16 * MiB, whenFull: 'wait', settingNames: names });
    const failure = await writeOva(dir, space, 'whole').catch((e: Error) => e);
    expect(failure).toBeInstanceOf(ScratchSpaceError);
    expect((failure as Error).message).toMatch(/^writing the OVA whole\.ova needs 73 MiB of scratch space in .*, more than the whole 16 MiB allowed \(IMAGING_SCRATCH_LIMIT_MB\); raise it$/);
  });

  test('fail: work that finds too little left fails with a message saying so; wait: it waits, then completes', async () => {
    const dir = tempDir('limits-scratch-modes-');
    const failing = new ScratchSpace({ dir, limitBytes: 100 * MiB, whenFull: 'fail', settingNames: names });
    const other = await failing.reserve(50 * MiB, 'another job');
    await expect(writeOva(dir, failing, 'failing')).rejects.toThrow(/needs 73 MiB of scratch space and 50 MiB of the 100 MiB allowed \(IMAGING_SCRATCH_LIMIT_MB\) is in use; failing this attempt \(IMAGING_SCRATCH_WHEN_FULL=fail\)/);
    await other.release();
    expect(await writeOva(dir, failing, 'failing')).toBeGreaterThan(8 * MiB);

    const waiting = new ScratchSpace({ dir, limitBytes: 100 * MiB, whenFull: 'wait', settingNames: names });
    const held = await waiting.reserve(50 * MiB, 'another job');
    const written = writeOva(dir, waiting, 'waiting').then((size) => ({ size, at: Date.now() }));
    await new Promise((r) => setTimeout(r, 500));
    expect(waiting.inUse).toBe(50 * MiB);
    const releasedAt = Date.now();
    await held.release();
    const done = await written;
    expect(done.at).toBeGreaterThanOrEqual(releasedAt);
    expect(done.size).toBeGreaterThan(8 * MiB);
    expect(waiting.inUse).toBe(0);
    // Nothing of the scratch files is left behind.
    expect(readdirSync(dir).filter((f) => f.startsWith('imaging-scratch-'))).toEqual([]);
  });
});

describe('I/O parallelism of the toolkit (IMAGING_READS_IN_FLIGHT; IMAGING_WORKER_THREADS in limits-worker-threads.test.ts)', () => {
  /** A source that remembers the most reads it had in flight at once. */
  function watched(inner: RandomAccessSource): RandomAccessSource & { most: number } {
    let now = 0;
    const out = {
      most: 0,
      size: inner.size,
      name: inner.name,
      read: async (offset: number, length: number) => {
        now++;
        out.most = Math.max(out.most, now);
        await new Promise((r) => setTimeout(r, 5));
        try {
          return await inner.read(offset, length);
        } finally {
          now--;
        }
      },
      close: () => inner.close(),
    };
    return out;
  }

  test('reads in flight: the setting reaches the stage config and bounds a conversion', async () => {
    expect(stageConfigFromEnv({ ...STAGE_ENV, IMAGING_READS_IN_FLIGHT: '2' }).readsInFlight).toBe(2);
    const dir = tempDir('limits-reads-');
    const raw = join(dir, 'in.raw');
    writeFileSync(raw, seededBytes(32 * MiB, 9));
    const mostWith = async (readConcurrency: number) => {
      const source = watched(await FileSource.open(raw));
      const sink = await FileSink.create(join(dir, `out-${readConcurrency}.vmdk`), 'out.vmdk');
      await convertImage({ source, sink, output: 'vmdk', claimedFormat: 'raw', readConcurrency, memoryLimitBytes: 256 * MiB });
      await source.close();
      return source.most;
    };
    expect(await mostWith(2)).toBeLessThanOrEqual(2);
    // The bound above is the setting's doing: with more allowed, more are in flight.
    expect(await mostWith(8)).toBeGreaterThan(2);
  });
});
