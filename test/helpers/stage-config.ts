/**
 * How a test runs a stage in-process against a test S3 server: the stage config (path-style
 * storage with the server's key pair, part URLs allowed from the server, 100 ms upload polls, a
 * 64 MiB memory limit; `more` adds or overrides) and a StageContext around it (first delivery,
 * silent log, published events collected in `published`).
 */
import type { CloudEvent } from 'cloudevents';
import pino from 'pino';
import type { StageConfig, StageContext } from '../../functions/stage';
import type { TaskStore } from '../../tasks/store';
import type { RunningMotoServer } from './moto-server';
import type { RunningS3Server } from './s3-server';

type TestS3Server = Pick<RunningS3Server | RunningMotoServer, 'endpoint' | 'accessKeyId' | 'secretAccessKey' | 'region' | 's3'>;

export function testStageConfig(s3: TestS3Server, imageBucket: string, more: Partial<StageConfig> = {}): StageConfig {
  return {
    storage: { endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, forcePathStyle: true },
    imageBucket,
    allowedObjectHosts: [new URL(s3.endpoint).host],
    uploadPollMs: 100,
    memoryLimitBytes: 64 * 2 ** 20,
    ...more,
  };
}

export function testStageContext(tasks: TaskStore, s3: TestS3Server, config: StageConfig, published: CloudEvent<unknown>[] = []): StageContext {
  return {
    tasks,
    s3: s3.s3,
    config,
    publish: async (event) => void published.push(event),
    delivery: { attempt: 1, working: () => undefined },
    log: pino({ level: 'silent' }),
  };
}
