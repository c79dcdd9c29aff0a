/**
 * The S3 side of `npm run bench:unbundle`, in its own process so its peak RSS is its own: the
 * decrypt stage's unbundle-to-store (functions/bundle/unbundle-to-store.ts) run as the stage runs
 * it, reading the bundle's parts from S3 with the owning account's key and writing the image into
 * the image store bucket by multipart upload. The task and account live in a throw-away SQLite
 * task store (progress is written to it, as in the service).
 *   node dist/bench/unbundle-s3-worker.js '<json job>'
 * Prints one JSON line: the stored image's SHA-256 and size, the unbundle's own seconds (wall and
 * CPU), peak RSS.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { readFileSync } from 'fs';
import { unbundleToStore } from '../functions/bundle/unbundle-to-store';
import { verifiedBundle } from '../functions/bundle/verify-manifest';
import type { StageContext } from '../functions/stage';
import { rowOf } from '../pipeline/table';
import { SqliteTaskStore } from '../tasks/sqlite-store';
import type { TaskDocument } from '../tasks/task';
import { parseBundleManifest } from '../toolkit/bundle/bundle-manifest';
import { makeS3Client, type ObjectStorageConfig } from '../toolkit/io/object-storage';

const MiB = 1024 * 1024;

export interface UnbundleS3Job {
  storage: ObjectStorageConfig;
  /** Where the bundle was uploaded: bucket and the manifest's key (parts next to it). */
  bucket: string;
  manifestKey: string;
  /** The manifest as bundled (local copy) and the cloud's private key that unwraps its AES key. */
  manifestPath: string;
  cloudKeyPath: string;
  imageBucket: string;
  memoryLimitMiB: number;
  /** SQLite file of the throw-away task store. */
  dbPath: string;
  /** Distinguishes the runs (task ids, so image keys differ). */
  run: number;
}

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

async function main(job: UnbundleS3Job): Promise<void> {
  const tasks = SqliteTaskStore.open(job.dbPath);
  const accountId = `1000000000${String(job.run).padStart(2, '0')}`;
  const now = new Date().toISOString();
  await tasks.createAccount({ accountId, name: `bench-${job.run}`, admin: false, createdAt: now });
  // The bundle is read with the account's own key: here the S3 server's.
  await tasks.createKey({ accessKeyId: job.storage.accessKeyId, accountId, secretAccessKey: job.storage.secretAccessKey, createdAt: now }).catch(() => undefined);
  const manifest = parseBundleManifest(readFileSync(job.manifestPath));
  const task: TaskDocument = {
    id: `bundle-reg-0bench${String(job.run).padStart(12, '0')}`,
    kind: 'register-bundle',
    accountId,
    state: rowOf('decrypt').expects,
    statusMessage: '',
    progress: 0,
    bytesConverted: 0,
    request: {
      format: 'RAW',
      bytes: manifest.size,
      manifestUrl: `s3://${job.bucket}/${job.manifestKey}`,
      volumeSizeGiB: Math.max(1, Math.ceil(manifest.size / 1024 ** 3)),
      bundle: {
        imageId: 'emi-0bench000000000000', imageType: manifest.imageType, bucket: job.bucket, manifestKey: job.manifestKey, name: 'bench',
        architecture: manifest.architecture, rootDeviceName: '/dev/sda1', blockDeviceMappings: [], virtualizationType: 'hvm',
      },
    },
    // What the manifest stage hands on once the signature is verified (functions/bundle/verify-manifest.ts).
    artifacts: { bundle: verifiedBundle(manifest, job.manifestKey, 'bench') },
    history: [],
    createdAt: now,
    updatedAt: now,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(),
    version: 0,
  };
  await tasks.create(task);
  const s3 = makeS3Client(job.storage);
  const ctx: StageContext = {
    tasks,
    s3,
    config: {
      storage: job.storage,
      imageBucket: job.imageBucket,
      allowedObjectHosts: [],
      uploadPollMs: 1000,
      memoryLimitBytes: job.memoryLimitMiB * MiB,
      cloudPrivateKey: readFileSync(job.cloudKeyPath, 'utf8'),
    },
    publish: async () => undefined,
    delivery: { attempt: 1, working: () => undefined },
    log: quiet,
  };
  const started = process.hrtime.bigint();
  const cpuBefore = process.cpuUsage();
  const { image } = await unbundleToStore(ctx, task);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  s3.destroy();
  await tasks.close();
  process.stdout.write(JSON.stringify({ sha256: image.sha256, size: image.size, key: image.key, seconds, cpuSeconds, maxRssKiB: process.resourceUsage().maxRSS }) + '\n');
}

main(JSON.parse(process.argv[2]) as UnbundleS3Job).catch((err) => {
  console.error(err);
  process.exit(1);
});
