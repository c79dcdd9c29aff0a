/**
 * Process entrypoint of a stage container: `node dist/functions/host/main.js`.
 *   IMAGING_STAGE      a stage of the pipeline table (pipeline/table.ts)
 *   IMAGING_HOST_MODE  jetstream (default; IMAGING_NATS_URL) | http (IMAGING_HTTP_PORT, default 8080;
 *                      next events to K_SINK, else to IMAGING_NATS_URL)
 *   IMAGING_ADMIN_PORT (default 8775): /healthz, /readyz and /metrics
 *   IMAGING_CONCURRENCY, IMAGING_MAX_DELIVER, IMAGING_ACK_WAIT_MS  (jetstream mode; defaults
 *   from the stage's row in pipeline/table.ts), IMAGING_RETRY_BACKOFF_MS / _MAX_MS (back-off)
 * plus the other settings a stage reads (config/settings-schema.ts). SIGTERM/SIGINT stop intake and let in-flight
 * work finish for up to IMAGING_DRAIN_DEADLINE_MS; what still runs then is handed back (nak'ed, so another
 * replica takes it at once), cleans up what it wrote, and the process exits 0.
 */
import { JetStreamBus } from '../../events/jetstream-bus';
import { retryDelays } from '../../events/retry-backoff';
import { createServiceMetrics } from '../../ops/metrics';
import { applyProcessLimits } from '../../ops/process-limits';
import { toolCapabilityChecks } from '../../ops/tool-capabilities';
import { natsCheck, objectStorageCheck, observedTaskStore, startProcessAdmin, taskStoreCheck, type ProcessAdmin } from '../../ops/process-admin';
import { ensureBucket } from '../../toolkit/io/object-storage';
import { stageByName } from '../stages';
import type { StageDeps } from './deps';
import { ConfigError, stageDepsFromEnv, stageSettingsFromEnv } from './env-config';
import { startHttpStage } from './http-function';
import { runStageOnBus } from './stage-runner';
import { startSweeper } from '../sweeper';
import { startJanitor } from '../janitor';

type Env = Record<string, string | undefined>;

/** Starts the stage; resolves to a function that shuts it down gracefully. */
export async function startStageProcess(env: Env = process.env): Promise<{ describe: string; adminUrl: string; shutdown(): Promise<void> }> {
  // Check every setting before connecting anywhere: a typo should fail in one line, at once.
  const settings = stageSettingsFromEnv(env);
  if (!settings.stage) throw new ConfigError('IMAGING_STAGE is not set');
  const stage = stageByName(settings.stage);
  const mode = settings.hostMode;
  if (mode === 'jetstream' && !settings.natsUrl) throw new ConfigError('IMAGING_NATS_URL is not set');
  const natsUrl = settings.natsUrl;
  const port = settings.httpPort;

  applyProcessLimits(settings);
  const opened: StageDeps = await stageDepsFromEnv(env);
  const metrics = createServiceMetrics({ process: `stage-${stage.name}`, taskStateCounts: () => opened.tasks.countByState() });
  const deps: StageDeps = { ...opened, tasks: observedTaskStore(opened.tasks, metrics, opened.log), metrics };
  // A fresh install has no image bucket yet: made here (as `imaging serve` does), not by the first
  // conversion, so that /readyz can pass before any work arrives. Unreachable storage is /readyz's to report.
  await ensureBucket(deps.s3, deps.config.imageBucket).catch((error: Error) =>
    deps.log.warn({ stage: stage.name, bucket: deps.config.imageBucket, err: error }, 'could not make sure the image bucket exists'),
  );
  const storeChecks = [taskStoreCheck(deps.tasks), objectStorageCheck(deps.s3, deps.config.imageBucket)];
  const startAdmin = (checks: Parameters<typeof startProcessAdmin>[0]['checks']): Promise<ProcessAdmin> =>
    startProcessAdmin({ process: `stage-${stage.name}`, port: settings.adminPort, metrics, checks: [...storeChecks, ...checks], capabilities: toolCapabilityChecks(stage.name, env.PATH) });
  if (mode === 'http') {
    // The next event goes to Knative's K_SINK when one is injected, else onto the pipeline's
    // JetStream stream (the Broker is fed from it), else nowhere (the stage fails the delivery).
    const sinkBus = !env.K_SINK && natsUrl ? await JetStreamBus.connect({ servers: natsUrl, name: `imaging-${stage.name}`, log: deps.log }) : undefined;
    const server = await startHttpStage(stage, deps, port, sinkBus ? (event) => sinkBus.publish(event) : undefined, '0.0.0.0', settings.concurrency);
    const admin = await startAdmin(sinkBus ? [natsCheck(sinkBus)] : []);
    return {
      describe: `stage ${stage.name} serving CloudEvents on ${server.url}; admin on ${admin.server.url}`,
      adminUrl: admin.server.url,
      shutdown: async () => {
        await server.close();
        await admin.server.close();
        await sinkBus?.close();
        await deps.tasks.close();
      },
    };
  }
  const retryDelayMs = retryDelays({ firstMs: settings.retryBackoffMs, maxMs: settings.retryBackoffMaxMs });
  const bus = await JetStreamBus.connect({ servers: natsUrl!, name: `imaging-${stage.name}`, log: deps.log, retryDelayMs });
  // Unset, each falls back to the stage's row in the pipeline table.
  const subscription = await runStageOnBus(stage, deps, bus, {
    concurrency: settings.concurrency,
    maxDeliver: settings.maxDeliver,
    ackWaitMs: settings.ackWaitMs,
  });
  const admin = await startAdmin([natsCheck(bus)]);
  // Every replica sweeps: re-drives publish under shared ids, so replicas sweeping together publish once.
  const sweeper = startSweeper(deps, (event) => bus.publish(event), {
    intervalMs: Math.min(settings.sweepIntervalMs, settings.uploadPollMs),
    idleMs: settings.redriveIdleMs,
  });
  // Convert writes the image store, so its replicas also clear what killed attempts left there.
  const janitor = stage.name === 'convert'
    ? startJanitor({ tasks: deps.tasks, s3: deps.s3, bucket: deps.config.imageBucket, log: deps.log }, { intervalMs: settings.janitorIntervalMs, ageMs: settings.leftoverAgeMs })
    : undefined;
  return {
    describe: `stage ${stage.name} consuming ${stage.consumes} from ${natsUrl}; admin on ${admin.server.url}`,
    adminUrl: admin.server.url,
    shutdown: async () => {
      await sweeper.stop();
      await janitor?.stop();
      await subscription.stop({ deadlineMs: settings.drainDeadlineMs });
      await admin.server.close();
      await bus.close();
      await deps.tasks.close();
    },
  };
}

async function main(): Promise<void> {
  let running: Awaited<ReturnType<typeof startStageProcess>>;
  try {
    running = await startStageProcess();
  } catch (error) {
    console.error(`imaging stage: ${(error as Error).message}`);
    process.exit(1);
  }
  console.error(running.describe);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.error(`${signal}: finishing in-flight work`);
    running.shutdown().then(
      () => process.exit(0),
      (error) => {
        console.error(`shutdown failed: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (require.main === module) void main();
