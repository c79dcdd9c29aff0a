/**
 * Soak benchmark of the distributed pipeline's delivery guarantees (issue 10): 200 small
 * imports (5 MiB RAW disks) through 2 replicas of every stage (each its own process) on a real nats-server,
 * jongodb and moto_server (behind a recording proxy), while stage processes are killed with
 * SIGKILL at random (each replaced a second later) and NATS is killed and restarted once.
 *
 * Prints: completed, lost (not completed within the time limit, or failed / cancelled),
 * duplicated (a task with a state twice in its history, or more than one CreateMultipartUpload
 * or CompleteMultipartUpload of its image), leftover uploads and objects in the image store,
 * and p50 / p99 end-to-end time (ImportVolume to completed). Target: 200 / 0 / 0 / 0.
 *
 *   npm run bench:soak [-- --imports 200 --kill-every-ms 4000 --limit-s 900]
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { IMAGE_BUCKET, STAGES, startCluster, type Cluster } from '../test/helpers/pipeline-cluster';
import { seededBytes } from '../test/helpers/disk-corpus';
import { isTerminal } from '../tasks/state-machine';

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

const IMPORTS = option('imports', 200);
const KILL_EVERY_MS = option('kill-every-ms', 4000);
const LIMIT_MS = option('limit-s', 900) * 1000;
const SUBMIT_CONCURRENCY = 8;

function log(message: string): void {
  process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function chaos(cluster: Cluster, stopAt: () => boolean, natsRestartAfterMs: number): Promise<{ kills: number; natsRestarts: number }> {
  const started = Date.now();
  let kills = 0;
  let natsRestarts = 0;
  while (!stopAt()) {
    await new Promise((r) => setTimeout(r, KILL_EVERY_MS * (0.5 + Math.random())));
    if (stopAt()) break;
    if (natsRestarts === 0 && Date.now() - started > natsRestartAfterMs) {
      log('NATS: kill -9, 2 s down, restart');
      await cluster.nats.restart({ signal: 'SIGKILL', downMs: 2000 });
      natsRestarts++;
      continue;
    }
    const victims = cluster.stages;
    const victim = victims[Math.floor(Math.random() * victims.length)];
    if (!victim) continue;
    log(`kill -9 ${victim.stage} (pid ${victim.pid})`);
    await cluster.kill(victim);
    kills++;
    setTimeout(() => {
      void cluster.startStage(victim.stage).catch((err) => log(`restart of ${victim.stage} failed: ${String(err)}`));
    }, 1000);
  }
  return { kills, natsRestarts };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'imaging-soak-'));
  log(`starting nats-server, jongodb, moto_server, the gateway and 2 replicas of each of ${STAGES.join(', ')}`);
  const cluster = await startCluster({
    s3: 'moto',
    replicas: Object.fromEntries(STAGES.map((s) => [s, 2])),
    proxy: {},
    env: {
      IMAGING_LEASE_MS: '5000',
      IMAGING_SWEEP_INTERVAL_MS: '1000',
      IMAGING_REDRIVE_IDLE_MS: '15000',
      IMAGING_ACK_WAIT_MS: '5000',
      IMAGING_LOG_LEVEL: 'error',
      // 5 MiB parts (memory bound / 32).
      IMAGING_MEMORY_LIMIT_MB: '160',
    },
  });
  try {
    const disks = Array.from({ length: IMPORTS }, (_, i) => {
      const path = join(dir, `disk-${i}.raw`);
      const fd = openSync(path, 'w');
      // Just over one 5 MiB part: the image goes up as a multipart upload, which a kill can strand.
      writeSync(fd, seededBytes(5 * 2 ** 20 + 4099 + i, 1000 + i));
      closeSync(fd);
      return path;
    });
    const ids: string[] = new Array(IMPORTS);
    const submitted: number[] = new Array(IMPORTS);
    let submitting = true;
    let done = false;
    const start = Date.now();
    const chaosRun = chaos(cluster, () => done, 20_000);
    let next = 0;
    let submitErrors = 0;
    await Promise.all(Array.from({ length: SUBMIT_CONCURRENCY }, async () => {
      while (next < IMPORTS) {
        const i = next++;
        for (let attempt = 0; ; attempt++) {
          try {
            submitted[i] = Date.now();
            ids[i] = await cluster.importVolume(disks[i], `soak-${i}/`);
            break;
          } catch (err) {
            // The gateway answers an error while NATS or the store is down: a client retries.
            submitErrors++;
            if (attempt >= 20) throw err;
            await new Promise((r) => setTimeout(r, 1000));
          }
        }
      }
    }));
    submitting = false;
    log(`${IMPORTS} imports submitted in ${((Date.now() - start) / 1000).toFixed(1)} s (${submitErrors} calls retried by the client)`);

    const deadline = start + LIMIT_MS;
    let docs = await Promise.all(ids.map((id) => cluster.tasks.get(id)));
    while (!docs.every((d) => d && isTerminal(d.state)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      docs = await Promise.all(ids.map((id) => cluster.tasks.get(id)));
    }
    done = true;
    const { kills, natsRestarts } = await chaosRun;
    // Let replacement processes settle, then look at what is left.
    await new Promise((r) => setTimeout(r, 2000));
    docs = await Promise.all(ids.map((id) => cluster.tasks.get(id)));

    const completed = docs.filter((d) => d?.state === 'completed');
    const lost = docs.filter((d) => d?.state !== 'completed');
    const creates = new Map<string, number>();
    const completes = new Map<string, number>();
    for (const r of cluster.s3Requests) {
      const m = /\/images\/([^/]+)\//.exec(r.url);
      if (!m || r.method !== 'POST') continue;
      if (/[?&]uploads(=|&|$)/.test(r.url)) creates.set(m[1], (creates.get(m[1]) ?? 0) + 1);
      if (/[?&]uploadId=/.test(r.url)) completes.set(m[1], (completes.get(m[1]) ?? 0) + 1);
    }
    // Done twice: a state entered twice (a step committed twice). A conversion redone after its
    // replica was killed is not a duplicate, but it is counted (re-converted) and so is an upload
    // completed by an attempt that was killed before it could commit (completed-uncommitted).
    const duplicated = docs.filter((d) => {
      if (!d) return false;
      const seen = d.history.map((h) => h.to);
      return new Set(seen).size !== seen.length;
    });
    const extraCompletes = docs.filter((d) => d && (completes.get(d.id) ?? 0) > 1);
    const reconverted = docs.filter((d) => d && (creates.get(d.id) ?? 0) > 1).length;
    const uploads = (await cluster.s3.send(new ListMultipartUploadsCommand({ Bucket: IMAGE_BUCKET }))).Uploads ?? [];
    const objects = (await cluster.s3.send(new ListObjectsV2Command({ Bucket: IMAGE_BUCKET }))).Contents ?? [];
    const outputs = new Set(completed.map((d) => d!.artifacts.image?.key));
    const strayObjects = objects.filter((o) => !outputs.has(o.Key));
    const times = completed.map((d) => Date.parse(d!.updatedAt) - Date.parse(d!.createdAt)).sort((a, b) => a - b);

    void submitting;
    console.log(`soak: ${IMPORTS} small imports (5 MiB RAW, 2 parts), 2 replicas per stage, ${kills} stage processes killed with SIGKILL, ${natsRestarts} NATS kill -9 + restart`);
    console.log(`completed            ${completed.length}`);
    console.log(`lost                 ${lost.length}${lost.length ? `  (${lost.slice(0, 5).map((d) => `${d?.id} ${d?.state} ${d?.statusMessage}`).join('; ')})` : ''}`);
    console.log(`duplicated           ${duplicated.length}  (a state entered twice: a step committed twice)${duplicated.length ? `  ${duplicated.slice(0, 5).map((d) => `${d!.id}: ${d!.history.map((h) => h.to).join('>')}`).join('; ')}` : ''}`);
    console.log(`leftover uploads     ${uploads.length}`);
    console.log(`leftover objects     ${strayObjects.length}  (image store objects that are no completed task's output)`);
    console.log(`re-converted         ${reconverted}  (tasks whose conversion started again after a killed attempt)`);
    console.log(`completed-uncommitted ${extraCompletes.length}  (tasks with an upload completed by an attempt killed before it committed; its object was removed)${extraCompletes.length ? `  ${extraCompletes.slice(0, 5).map((d) => `${d!.id}: ${creates.get(d!.id)} creates, ${completes.get(d!.id)} completes`).join('; ')}` : ''}`);
    console.log(`end-to-end p50       ${(percentile(times, 50) / 1000).toFixed(1)} s`);
    console.log(`end-to-end p99       ${(percentile(times, 99) / 1000).toFixed(1)} s`);
    console.log(`wall time            ${((Date.now() - start) / 1000).toFixed(0)} s`);
    process.exitCode = completed.length === IMPORTS && duplicated.length === 0 && uploads.length === 0 ? 0 : 1;
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
