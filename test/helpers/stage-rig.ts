/**
 * What a test of stage processes stands on: a real nats-server with JetStream, an S3 server
 * (s3rver, or moto_server where multipart listing matters) with an upload bucket and an image
 * bucket, a SQLite task store file the test shares with the stage processes, and a JetStream
 * bus to publish events on. Stages started through the rig get the settings to work on all of
 * it; stop() ends them and everything else.
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { join } from 'path';
import { JetStreamBus } from '../../events/jetstream-bus';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument, TaskState } from '../../tasks/task';
import { tempDir } from './disk-corpus';
import { startMotoServer, type RunningMotoServer } from './moto-server';
import { startNatsServer, type RunningNatsServer } from './nats-server';
import { startS3Server, type RunningS3Server } from './s3-server';
import { startStageProcess, type StageProcess } from './stage-process';
import { waitUntil } from './wait-until';

export interface StageRig<S3 extends RunningS3Server | RunningMotoServer> {
  nats: RunningNatsServer;
  s3: S3;
  tasks: SqliteTaskStore;
  bus: JetStreamBus;
  imageBucket: string;
  /** The stage processes started so far. */
  stages: StageProcess[];
  /**
   * Starts a stage process on the rig, its S3 calls through `s3Endpoint` (default the server;
   * a proxy in front of it, say), with more settings in `env`.
   */
  startStage(stage: string, env?: Record<string, string>, s3Endpoint?: string): Promise<StageProcess>;
  /** Resolves with the task once it is no longer in `state`, or as it is after `timeoutMs`. */
  leftState(id: string, state: TaskState, timeoutMs: number): Promise<TaskDocument | undefined>;
  stop(): Promise<void>;
}

export interface StageRigOptions {
  /** Names its temp dir and image bucket. */
  name: string;
}

export async function startStageRig(options: StageRigOptions & { s3: 'moto' }): Promise<StageRig<RunningMotoServer>>;
export async function startStageRig(options: StageRigOptions & { s3: 's3rver' }): Promise<StageRig<RunningS3Server>>;
export async function startStageRig(options: StageRigOptions & { s3: 'moto' | 's3rver' }): Promise<StageRig<RunningS3Server | RunningMotoServer>> {
  const [nats, s3] = await Promise.all([startNatsServer(), options.s3 === 'moto' ? startMotoServer() : startS3Server()]);
  const imageBucket = `${options.name}-images`;
  const dbPath = join(tempDir(`${options.name}-`), 'tasks.db');
  const tasks = SqliteTaskStore.open(dbPath);
  const stages: StageProcess[] = [];
  let bus: JetStreamBus | undefined;
  const stop = async () => {
    await Promise.all(stages.map((stage) => stage.kill()));
    await bus?.close();
    await tasks.close();
    await Promise.all([nats.stop(), s3.stop()]);
  };
  try {
    await s3.s3.send(new CreateBucketCommand({ Bucket: 'uploads' }));
    await s3.s3.send(new CreateBucketCommand({ Bucket: imageBucket }));
    bus = await JetStreamBus.connect({ servers: nats.url, log: { warn: () => undefined, error: () => undefined } });
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    nats,
    s3,
    tasks,
    bus,
    imageBucket,
    stages,
    async startStage(stage, env = {}, s3Endpoint = s3.endpoint) {
      const proc = await startStageProcess(stage, {
        IMAGING_NATS_URL: nats.url,
        IMAGING_MONGODB_URI: `sqlite:${dbPath}`,
        IMAGING_S3_ENDPOINT: s3Endpoint,
        IMAGING_S3_ACCESS_KEY_ID: s3.accessKeyId,
        IMAGING_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
        // Part URLs are presigned for the server itself, whichever endpoint the stage calls.
        IMAGING_ALLOWED_OBJECT_HOSTS: new URL(s3.endpoint).host,
        IMAGING_IMAGE_BUCKET: imageBucket,
        ...env,
      });
      stages.push(proc);
      return proc;
    },
    async leftState(id, state, timeoutMs) {
      let task: TaskDocument | undefined;
      await waitUntil(async () => (task = await tasks.get(id))?.state !== state, { what: `task ${id} leaving ${state}`, timeoutMs, everyMs: 200 }).catch(() => undefined);
      return task;
    },
    stop,
  };
}
