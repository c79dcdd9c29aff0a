/**
 * `imaging gateway`: only the EC2 endpoint, for distributed runs where each stage is its own
 * function. Events go to NATS JetStream and tasks to the configured store (MongoDB).
 */
import pino from 'pino';
import { LOG_REDACTION_OPTIONS } from '../ops/log-redaction';
import { createGateway } from '../gateway/server';
import { userBucketProber, userObjectReader } from '../gateway/user-objects';
import { ACTIONS } from '../gateway/actions';
import { gatewayRequestObserver, natsCheck, observedTaskStore, startProcessAdmin, taskStoreCheck } from '../ops/process-admin';
import { createServiceMetrics } from '../ops/metrics';
import { ensureBootstrapAccount, StoreAccountDirectory } from '../gateway/accounts';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { makeS3Client } from '../toolkit/io/object-storage';
import { openTaskStore } from '../tasks/open-store';
import { JetStreamBus } from '../events/jetstream-bus';
import { hostOf } from '../toolkit/io/url-policy';
import { settingsReadBy } from '../config/settings-schema';
import { typedSettings, type ServeSettings } from './settings';
import { serverTlsFiles, trustS3CaBundle } from './tls-settings';

export async function startGatewayProcess(settings: ServeSettings): Promise<{ url: string; adminUrl: string; stop(): Promise<void> }> {
  const missing = settingsReadBy('gateway')
    .filter((spec) => spec.requiredBy?.includes('gateway') && !settings[spec.key as keyof ServeSettings])
    .map((spec) => spec.env);
  if (!settings.allowedObjectHosts && !settings.s3Endpoint) missing.push('IMAGING_S3_ENDPOINT or IMAGING_ALLOWED_OBJECT_HOSTS');
  if (missing.length) throw new Error(`the gateway needs ${missing.join(', ')}`);
  const typed = typedSettings(settings, 'gateway');
  const tls = serverTlsFiles(settings);
  trustS3CaBundle(settings);
  const log = pino({ level: settings.logLevel || 'info', ...LOG_REDACTION_OPTIONS }, pino.destination(2));
  const store = await openTaskStore(settings.mongodbUri, { mongoDbName: settings.mongodbDb });
  const metrics = createServiceMetrics({ process: 'gateway', taskStateCounts: () => store.countByState() });
  const tasks = observedTaskStore(store, metrics, log);
  // Accounts live in the task store beside the tasks; the configured key is its first administrator.
  await ensureBootstrapAccount(tasks, { accountId: settings.accountId, accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey });
  const s3 = settings.s3Endpoint
    ? makeS3Client({
        endpoint: settings.s3Endpoint,
        region: settings.s3Region,
        accessKeyId: settings.s3AccessKeyId || settings.accessKeyId,
        secretAccessKey: settings.s3SecretAccessKey || settings.secretAccessKey,
        forcePathStyle: true,
      })
    : undefined;
  const bus = await JetStreamBus.connect({ servers: settings.natsUrl, name: 'imaging-gateway', log });
  // The gateway reads images only to delete them, so its readiness is the store and NATS.
  const admin = await startProcessAdmin({ process: 'gateway', port: typed.adminPort, metrics, checks: [taskStoreCheck(tasks), natsCheck(bus)] });
  const allowedObjectHosts = typed.allowedObjectHosts ? typed.allowedObjectHosts : [hostOf(settings.s3Endpoint)];
  const gateway = createGateway({
    tasks,
    publish: (event) => bus.publish(event),
    accounts: new StoreAccountDirectory(tasks),
    ...(s3 ? { deleteImageObject: async (bucket: string, key: string) => void (await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }))) } : {}),
    ...(settings.s3Endpoint ? { readUserObject: userObjectReader(tasks, { endpoint: settings.s3Endpoint, region: settings.s3Region, forcePathStyle: true }) } : {}),
    ...(settings.s3Endpoint ? { probeUserBucket: userBucketProber(tasks, { endpoint: settings.s3Endpoint, region: settings.s3Region, forcePathStyle: true }) } : {}),
    region: settings.region,
    allowedObjectHosts,
    taskLifetimeMs: typed.taskLifetimeHours * 3600_000,
    maxOpenTasksPerAccount: typed.maxOpenTasksPerAccount,
    ...(tls ? { tls } : {}),
    maxImageBytes: typed.maxImageBytes,
    log,
    onRequest: gatewayRequestObserver(metrics, Object.keys(ACTIONS)),
  });
  const listening = await gateway.listen(typed.port, settings.host);
  return {
    url: listening.url,
    adminUrl: admin.server.url,
    async stop() {
      await listening.close();
      await admin.server.close();
      await bus.close();
      await store.close();
      s3?.destroy();
    },
  };
}
