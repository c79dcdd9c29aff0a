/**
 * The distributed pipeline as an operator runs it, for fault tests and the soak benchmark: a
 * real nats-server with JetStream, the MongoDB-wire test server (jongodb), an S3 server
 * (moto_server, which lists and aborts multipart uploads, or s3rver), the gateway
 * (`imaging gateway`) and every stage as its own process (`functions/host/main.js`), any
 * number of replicas each. Optionally an HTTP proxy in front of S3 that records every request
 * and can hold back the answer to CompleteMultipartUpload. Processes can be killed (-9) and
 * started again; NATS can be restarted with its store kept.
 */
import { createServer, request as httpRequest, type Server } from 'http';
import { join } from 'path';
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { ImportVolumeCommand } from '@aws-sdk/client-ec2';
import { startNatsServer, type RunningNatsServer } from './nats-server';
import { startMongoServer } from './mongo-server';
import { startS3Server } from './s3-server';
import { startMotoServer } from './moto-server';
import { spawnChild, type RunningChild } from './child-process';
import { DIST } from './dist';
import { startStageProcess, type StageProcess } from './stage-process';
import { sdkClient } from './ec2-clients';
import { openTaskStore } from '../../tasks/open-store';
import type { TaskStore } from '../../tasks/store';
import type { TaskDocument } from '../../tasks/task';
import { isTerminal } from '../../tasks/state-machine';
import { upload, type Endpoints } from '../e2e/import-driver';
import { makeS3Client } from '../../toolkit/io/object-storage';

export const STAGES = ['manifest', 'decrypt', 'convert', 'validate', 'boot-check', 'register'] as const;
export type ClusterStage = (typeof STAGES)[number];
export const IMAGE_BUCKET = 'imaging-images';

export interface ClusterOptions {
  s3: 'moto' | 's3rver';
  /** Replicas per stage (default 1 each). */
  replicas?: Partial<Record<ClusterStage, number>>;
  /** Settings for every process. */
  env?: NodeJS.ProcessEnv;
  /** Settings for the replicas of one stage. */
  stageEnv?: Partial<Record<ClusterStage, NodeJS.ProcessEnv>>;
  /** Puts a recording proxy in front of S3; CompleteMultipartUpload answers are held back this long. */
  proxy?: { completeDelayMs?: number };
}

export type ClusterStageProcess = StageProcess<ClusterStage>;

export interface S3RequestRecord {
  method: string;
  url: string;
  at: number;
}

export interface Cluster {
  nats: RunningNatsServer;
  tasks: TaskStore;
  /** A client talking to the S3 server directly. */
  s3: S3Client;
  endpoints: Endpoints;
  stages: ClusterStageProcess[];
  /** Requests that went through the proxy (with `proxy`). */
  s3Requests: S3RequestRecord[];
  startStage(stage: ClusterStage, env?: NodeJS.ProcessEnv): Promise<ClusterStageProcess>;
  /** kill -9 (or `signal`) and wait until it is gone. */
  kill(proc: ClusterStageProcess, signal?: NodeJS.Signals): Promise<void>;
  /** Uploads `file` under `prefix` and calls ImportVolume through @aws-sdk/client-ec2; the task id. */
  importVolume(file: string, prefix: string, format?: 'RAW' | 'VMDK'): Promise<string>;
  /** Resolves when every task has ended (completed, cancelled or failed); the documents. */
  waitEnded(ids: string[], timeoutMs: number): Promise<TaskDocument[]>;
  stop(): Promise<void>;
}

const creds = { accessKeyId: 'AKIACLUSTER00001', secretAccessKey: 'cluster-secret-key-0123456789abcd', region: 'us-east-1' };

function startRecordingProxy(target: string, records: S3RequestRecord[], completeDelayMs: number): Promise<{ server: Server; endpoint: string }> {
  const to = new URL(target);
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    records.push({ method: req.method ?? '', url, at: Date.now() });
    const isComplete = req.method === 'POST' && /[?&]uploadId=/.test(url);
    const upstream = httpRequest({ host: to.hostname, port: to.port, method: req.method, path: url, headers: req.headers }, (answer) => {
      const relay = () => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      };
      if (isComplete && completeDelayMs > 0) setTimeout(relay, completeDelayMs);
      else relay();
    });
    upstream.on('error', () => {
      res.destroy();
    });
    req.pipe(upstream);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}` })));
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const [nats, mongo] = await Promise.all([startNatsServer(), startMongoServer()]);
  const s3Server = options.s3 === 'moto' ? await startMotoServer() : await startS3Server();
  if (options.s3 === 's3rver') {
    // The user signs S3 requests with the EC2 key pair; s3rver must know it.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- s3rver has no type declarations
    require('s3rver/lib/models/account').DUMMY_ACCOUNT.createKeyPair(creds.accessKeyId, creds.secretAccessKey);
  }
  const s3Requests: S3RequestRecord[] = [];
  const proxy = options.proxy ? await startRecordingProxy(s3Server.endpoint, s3Requests, options.proxy.completeDelayMs ?? 0) : undefined;
  const s3Endpoint = proxy?.endpoint ?? s3Server.endpoint;
  const dbName = `imaging_cluster_${process.pid}_${Date.now()}`;
  const tasks = await openTaskStore(mongo.uri, { mongoDbName: dbName });
  await s3Server.s3.send(new CreateBucketCommand({ Bucket: IMAGE_BUCKET })).catch(() => undefined);
  await s3Server.s3.send(new CreateBucketCommand({ Bucket: 'uploads' })).catch(() => undefined);
  const children: RunningChild[] = [];
  const stages: ClusterStageProcess[] = [];

  const common: NodeJS.ProcessEnv = {
    ...process.env,
    IMAGING_NATS_URL: nats.url,
    IMAGING_MONGODB_URI: mongo.uri,
    IMAGING_MONGODB_DB: dbName,
    IMAGING_S3_ENDPOINT: s3Endpoint,
    IMAGING_S3_ACCESS_KEY_ID: s3Server.accessKeyId,
    IMAGING_S3_SECRET_ACCESS_KEY: s3Server.secretAccessKey,
    IMAGING_IMAGE_BUCKET: IMAGE_BUCKET,
    IMAGING_UPLOAD_POLL_MS: '200',
    IMAGING_LOG_LEVEL: 'warn',
    IMAGING_ADMIN_PORT: '0',
    ...options.env,
  };

  async function startStage(stage: ClusterStage, env: NodeJS.ProcessEnv = {}): Promise<ClusterStageProcess> {
    const proc = await startStageProcess(stage, { ...common, ...options.stageEnv?.[stage], ...env }, { startMs: 60_000 });
    children.push(proc);
    stages.push(proc);
    return proc;
  }

  const abandon = async (error: unknown): Promise<never> => {
    await Promise.all(children.map((child) => child.stop('SIGKILL')));
    await tasks.close().catch(() => undefined);
    if (proxy) proxy.server.close();
    await Promise.all([nats.stop(), mongo.stop(), s3Server.stop()]);
    throw error;
  };
  // All replicas start at once; if any cannot, the others are stopped too (once they have started).
  const started = await Promise.allSettled(STAGES.flatMap((stage) => Array.from({ length: options.replicas?.[stage] ?? 1 }, () => startStage(stage))));
  const failed = started.find((result) => result.status === 'rejected');
  if (failed) return abandon(failed.reason);
  const gateway = spawnChild(process.execPath, [join(DIST, 'cli/main.js'), 'gateway'], {
    env: {
      ...common,
      IMAGING_PORT: '0',
      IMAGING_ACCESS_KEY_ID: creds.accessKeyId,
      IMAGING_SECRET_ACCESS_KEY: creds.secretAccessKey,
      IMAGING_ACCOUNT_ID: '123456789012',
    },
  });
  children.push(gateway);
  let ec2: string;
  try {
    ec2 = (await gateway.waitForOutput(/EC2 endpoint:\s+(\S+)/, 60_000))[1];
  } catch (error) {
    return abandon(new Error(`gateway did not start: ${(error as Error).message}`));
  }
  const endpoints: Endpoints = { ec2, s3: s3Endpoint, creds };
  const ec2Client = sdkClient(ec2, creds);
  const direct = options.s3 === 'moto' ? s3Server.s3 : makeS3Client({ endpoint: s3Server.endpoint, forcePathStyle: true, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', region: 'us-east-1' });

  return {
    nats,
    tasks,
    s3: direct,
    endpoints,
    stages,
    s3Requests,
    startStage,
    async kill(proc, signal = 'SIGKILL') {
      await proc.stop(signal);
      const at = stages.indexOf(proc);
      if (at >= 0) stages.splice(at, 1);
    },
    async importVolume(file, prefix, format = 'RAW') {
      const up = await upload(endpoints, file, 'uploads', { prefix, format });
      const created = await ec2Client.send(new ImportVolumeCommand({ Image: { Format: format, Bytes: up.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB }, AvailabilityZone: 'z' }));
      return created.ConversionTask!.ConversionTaskId!;
    },
    async waitEnded(ids, timeoutMs) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const docs = await Promise.all(ids.map((id) => tasks.get(id)));
        if (docs.every((d) => d && isTerminal(d.state))) return docs as TaskDocument[];
        if (Date.now() > until) {
          const open = docs.filter((d) => !d || !isTerminal(d.state)).map((d) => `${d?.id} ${d?.state}`);
          throw new Error(`${open.length} task(s) not ended after ${timeoutMs} ms: ${open.slice(0, 5).join(', ')}`);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    async stop() {
      await Promise.all(children.map((child) => child.stop('SIGKILL')));
      ec2Client.destroy();
      await tasks.close().catch(() => undefined);
      await new Promise<void>((r) => (proxy ? proxy.server.close(() => r()) : r()));
      await Promise.all([nats.stop(), mongo.stop(), s3Server.stop()]);
    },
  };
}
