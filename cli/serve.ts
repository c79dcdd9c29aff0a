/**
 * `imaging serve`: the whole service in one process with embedded defaults — the EC2 gateway,
 * every pipeline stage on an in-process bus (or NATS when configured), an embedded SQLite task
 * store (or MongoDB) and an embedded S3 endpoint (or an external one).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'fs';
import { join, resolve } from 'path';
import { randomBytes, randomInt } from 'crypto';
import pino from 'pino';
import { LOG_REDACTION_OPTIONS } from '../ops/log-redaction';
import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createGateway } from '../gateway/server';
import { userBucketProber, userObjectReader } from '../gateway/user-objects';
import { CLOUD_KEY_FILE, cloudCertificate, ensureCloudKey, readCloudKey } from '../toolkit/bundle/cloud-key';
import { ACTIONS } from '../gateway/actions';
import { gatewayRequestObserver, natsCheck, objectStorageCheck, observedTaskStore, startProcessAdmin, taskStoreCheck } from '../ops/process-admin';
import { toolCapabilityChecks } from '../ops/tool-capabilities';
import { createServiceMetrics } from '../ops/metrics';
import { ensureBootstrapAccount, StoreAccountDirectory } from '../gateway/accounts';
import { openTaskStore } from '../tasks/open-store';
import type { TaskStore } from '../tasks/store';
import type { EventBus, Subscription } from '../events/bus';
import { InProcessBus } from '../events/in-process-bus';
import { JetStreamBus } from '../events/jetstream-bus';
import { retryDelays } from '../events/retry-backoff';
import { ALL_STAGES } from '../functions/stages';
import { runStageOnBus } from '../functions/host/stage-runner';
import { startSweeper } from '../functions/sweeper';
import { startJanitor } from '../functions/janitor';
import type { StageConfig } from '../functions/stage';
import { ensureBucket, makeS3Client, type ObjectStorageConfig } from '../toolkit/io/object-storage';
import { hostOf } from '../toolkit/io/url-policy';
import { CREDENTIALS_FILE, type BootstrapCredentials } from './credentials';
import { startEmbeddedS3, type EmbeddedS3, type S3Key } from './embedded-s3';
import { typedSettings, type ServeSettings } from './settings';
import { serverTlsFiles, trustS3CaBundle } from './tls-settings';
import { guestPolicyOf } from '../functions/validate/guest-policy';
import { bootCheckConfigOf } from '../functions/boot-check/boot-check-config';
import { applyProcessLimits } from '../ops/process-limits';

export interface RunningService {
  ec2Endpoint: string;
  s3Endpoint: string;
  dataDir: string;
  credentials: BootstrapCredentials;
  tasks: TaskStore;
  s3: S3Client;
  /** The admin port: /healthz, /readyz, /metrics. */
  adminEndpoint: string;
  /** The certificate bundlers encrypt bundle keys for (the cloud key's). */
  cloudCertificate: string;
  stop(): Promise<void>;
}

/** The bootstrap account: from settings when given, else generated once and kept in the data dir. */
function bootstrapCredentials(settings: ServeSettings, dataDir: string): BootstrapCredentials {
  const path = join(dataDir, CREDENTIALS_FILE);
  const stored: Partial<BootstrapCredentials> = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : {};
  const credentials: BootstrapCredentials = {
    accountId: settings.accountId || stored.accountId || String(randomInt(100000, 999999)) + String(randomInt(100000, 999999)),
    accessKeyId: settings.accessKeyId || stored.accessKeyId || `AKIA${randomBytes(8).toString('hex').toUpperCase()}`,
    secretAccessKey: settings.secretAccessKey || stored.secretAccessKey || randomBytes(30).toString('base64').replace(/[+/=]/g, '').slice(0, 40),
  };
  if (JSON.stringify(credentials) !== JSON.stringify({ accountId: stored.accountId, accessKeyId: stored.accessKeyId, secretAccessKey: stored.secretAccessKey })) {
    writeFileSync(path, JSON.stringify(credentials, null, 2) + '\n', { mode: 0o600 });
    chmodSync(path, 0o600);
  }
  return credentials;
}

const SERVICE_S3_KEY_FILE = 'service-s3-key.json';

/**
 * The service's own key for the embedded S3, generated once and kept in the data dir (0600);
 * `created` says it was made just now.
 */
function serviceS3Key(dataDir: string): { key: S3Key; created: boolean } {
  const path = join(dataDir, SERVICE_S3_KEY_FILE);
  if (existsSync(path)) {
    const stored = JSON.parse(readFileSync(path, 'utf8')) as S3Key;
    return { key: { accessKeyId: stored.accessKeyId, secretAccessKey: stored.secretAccessKey }, created: false };
  }
  const key = { accessKeyId: `AKIS${randomBytes(8).toString('hex').toUpperCase()}`, secretAccessKey: randomBytes(30).toString('base64').replace(/[+/=]/g, '').slice(0, 40) };
  writeFileSync(path, JSON.stringify(key, null, 2) + '\n', { mode: 0o600 });
  chmodSync(path, 0o600);
  return { key, created: true };
}

export async function startService(settings: ServeSettings, options: { logToStderr?: boolean } = {}): Promise<RunningService> {
  // Refuse a wrong value before anything starts.
  const typed = typedSettings(settings, 'serve');
  const log = pino({ level: settings.logLevel || 'info', ...LOG_REDACTION_OPTIONS }, options.logToStderr === false ? pino.destination('/dev/null') : pino.destination(2));
  const dataDir = resolve(settings.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const credentials = bootstrapCredentials(settings, dataDir);
  const tls = serverTlsFiles(settings);
  trustS3CaBundle(settings);
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((err) => log.warn({ err: String(err) }, 'shutdown step failed'));
  };
  try {
    // The task store first: the embedded S3 knows accounts' keys from it.
    const store = await openTaskStore(settings.mongodbUri || `sqlite:${join(dataDir, 'tasks.db')}`, { mongoDbName: settings.mongodbDb });
    stops.push(() => store.close());
    // Accounts live in the task store; the bootstrap account is its first administrator.
    await ensureBootstrapAccount(store, credentials);
    const accounts = new StoreAccountDirectory(store);

    let embedded: EmbeddedS3 | undefined;
    let s3Endpoint = settings.s3Endpoint;
    let serviceKey: S3Key;
    if (!s3Endpoint) {
      // The embedded S3 knows every account's keys; the service has a key of its own (the only
      // one that reaches the image store), so the bootstrap account is an account like others there.
      const own = settings.s3AccessKeyId ? { key: { accessKeyId: settings.s3AccessKeyId, secretAccessKey: settings.s3SecretAccessKey }, created: false } : serviceS3Key(dataDir);
      serviceKey = own.key;
      mkdirSync(join(dataDir, 's3'), { recursive: true });
      embedded = await startEmbeddedS3({
        host: settings.host,
        port: typed.s3Port,
        directory: join(dataDir, 's3'),
        serviceKeys: [serviceKey],
        lookupKey: (accessKeyId) => accounts.lookup(accessKeyId),
        imageBucket: settings.imageBucket,
        ...(tls ? { tls } : {}),
        // Before the service had a key of its own, the bootstrap key was the service's: buckets
        // created with it then were recorded as the service's, and are the bootstrap account's.
        ...(own.created ? { formerServiceBucketsOwner: credentials.accountId } : {}),
      });
      stops.push(() => embedded!.stop());
      s3Endpoint = embedded.endpoint;
    } else {
      serviceKey = {
        accessKeyId: settings.s3AccessKeyId || credentials.accessKeyId,
        secretAccessKey: settings.s3SecretAccessKey || credentials.secretAccessKey,
      };
    }
    const storage: ObjectStorageConfig = {
      endpoint: s3Endpoint,
      region: settings.s3Region,
      ...serviceKey,
      forcePathStyle: true,
    };
    const s3 = makeS3Client(storage);
    stops.push(async () => s3.destroy());
    const allowedObjectHosts = typed.allowedObjectHosts
      ? typed.allowedObjectHosts
      : [hostOf(s3Endpoint), ...(embedded && ['127.0.0.1', '0.0.0.0'].includes(settings.host) ? [`localhost:${new URL(s3Endpoint).port}`] : [])];
    await ensureBucket(s3, settings.imageBucket);

    const metrics = createServiceMetrics({ process: 'serve', taskStateCounts: () => store.countByState() });
    const tasks = observedTaskStore(store, metrics, log);
    const retryDelayMs = retryDelays({ firstMs: typed.retryBackoffMs, maxMs: typed.retryBackoffMaxMs });
    const jetstream = settings.natsUrl ? await JetStreamBus.connect({ servers: settings.natsUrl, log, retryDelayMs }) : undefined;
    const bus: EventBus = jetstream ?? new InProcessBus({ retryDelayMs });
    stops.push(() => bus.close());
    const admin = await startProcessAdmin({
      process: 'serve',
      port: typed.adminPort,
      host: settings.host,
      metrics,
      checks: [taskStoreCheck(tasks), objectStorageCheck(s3, settings.imageBucket), ...(jetstream ? [natsCheck(jetstream)] : [])],
      // serve runs every stage, so it reports every stage's tools.
      capabilities: ALL_STAGES.flatMap((stage) => toolCapabilityChecks(stage.name)),
    });
    stops.push(() => admin.server.close());

    const config: StageConfig = {
      storage,
      imageBucket: settings.imageBucket,
      allowedObjectHosts,
      uploadPollMs: typed.uploadPollMs,
      memoryLimitBytes: typed.memoryLimitMb * 2 ** 20,
      accountStorageQuotaBytes: Math.floor(typed.accountStorageQuotaGib * 2 ** 30),
      // Bundles are wrapped for the cloud's key: the configured secret, else one made once here.
      cloudPrivateKey: typed.cloudKeyFile ? readCloudKey(typed.cloudKeyFile) : ensureCloudKey(join(dataDir, CLOUD_KEY_FILE)),
      acceptUnsignedBundles: typed.acceptUnsignedBundles,
      guestPolicy: guestPolicyOf(typed),
      bootCheck: bootCheckConfigOf(typed),
      maxImageBytes: typed.maxImageBytes,
      readsInFlight: typed.readsInFlight,
      leaseMs: typed.leaseMs,
      phaseDeadlineMs: typed.phaseDeadlineMs,
    };
    applyProcessLimits(typed);
    const subscriptions: Subscription[] = [];
    // Each stage consumes as its row in the pipeline table says (runStageOnBus reads it).
    for (const stage of ALL_STAGES) {
      subscriptions.push(await runStageOnBus(stage, { tasks, s3, config, log, metrics }, bus, { maxDeliver: typed.maxDeliver }));
    }
    stops.push(async () => {
      await Promise.all(subscriptions.map((s) => s.stop({ deadlineMs: typed.drainDeadlineMs })));
    });
    const sweeper = startSweeper({ tasks, s3, config, log: log.child({ part: 'sweeper' }) }, (event) => bus.publish(event), {
      intervalMs: Math.min(typed.sweepIntervalMs, typed.uploadPollMs),
      idleMs: typed.redriveIdleMs,
    });
    stops.push(() => sweeper.stop());
    const janitor = startJanitor({ tasks, s3, bucket: config.imageBucket, log: log.child({ part: 'janitor' }) }, {
      intervalMs: typed.janitorIntervalMs,
      ageMs: typed.leftoverAgeMs,
    });
    stops.push(() => janitor.stop());

    const gateway = createGateway({
      tasks,
      publish: (event) => bus.publish(event),
      accounts,
      deleteImageObject: async (bucket, key) => {
        await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      },
      readUserObject: userObjectReader(tasks, { endpoint: storage.endpoint, region: storage.region, forcePathStyle: true }),
      probeUserBucket: userBucketProber(tasks, { endpoint: storage.endpoint, region: storage.region, forcePathStyle: true }),
      region: settings.region,
      allowedObjectHosts,
      taskLifetimeMs: typed.taskLifetimeHours * 3600_000,
      maxOpenTasksPerAccount: typed.maxOpenTasksPerAccount,
      ...(tls ? { tls } : {}),
      maxImageBytes: typed.maxImageBytes,
      log: log.child({ part: 'gateway' }),
      onRequest: gatewayRequestObserver(metrics, Object.keys(ACTIONS)),
    });
    const listening = await gateway.listen(typed.port, settings.host);
    stops.push(() => listening.close());
    return { ec2Endpoint: listening.url, s3Endpoint, dataDir, credentials, tasks, s3, adminEndpoint: admin.server.url, cloudCertificate: cloudCertificate(config.cloudPrivateKey!), stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
