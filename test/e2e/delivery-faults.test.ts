/**
 * Delivery guarantees of the distributed pipeline under faults (issue 10, defects 1, 2 and 4),
 * with every stage its own process on a real nats-server (JetStream), jongodb and an S3 server:
 * - a stage process that dies between advancing a task and publishing the next event, then a
 *   NATS restart (kill -9, store kept) with 20 tasks in flight: every task completes;
 * - two convert replicas, no fault, CompleteMultipartUpload answered only after more than the
 *   ack wait (a delaying proxy in front of moto_server): converted once, one
 *   CreateMultipartUpload for the task;
 * - kill -9 of the convert replica working on a 1 GiB streamOptimized VMDK (mostly sparse:
 *   24 MiB of data) halfway, a second replica running: the task completes byte-identical to
 *   `qemu-img convert -O raw`, and ListMultipartUploads and a listing of the image store show
 *   nothing left behind.
 */
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import { closeSync, createReadStream, openSync, writeSync } from 'fs';
import { join } from 'path';
import { GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { seededBytes, tempDir } from '../helpers/disk-corpus';
import { IMAGE_BUCKET, startCluster, type Cluster } from '../helpers/pipeline-cluster';
import { describeWithMoto } from '../helpers/moto-server';

jest.setTimeout(240_000);

const MiB = 2 ** 20;

/** A small RAW disk of seeded bytes (1 MiB and a bit by default), distinct per `seed`. */
function smallDisk(dir: string, seed: number, bytes = MiB + 4099): string {
  const path = join(dir, `disk-${seed}.raw`);
  const fd = openSync(path, 'w');
  writeSync(fd, seededBytes(bytes, seed));
  closeSync(fd);
  return path;
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function objectSha256(cluster: Cluster, bucket: string, key: string): Promise<string> {
  const res = await cluster.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const hash = createHash('sha256');
  for await (const chunk of res.Body as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest('hex');
}

function states(doc: { history: { to: string }[] }): string[] {
  return doc.history.map((h) => h.to);
}

const COMPLETED_PATH = ['pending-upload', 'manifest-received', 'bundle-decrypted', 'disk-converted', 'validated', 'completed'];

describe('a crash between the advance and the publish, then a NATS restart with 20 tasks in flight', () => {
  let cluster: Cluster;
  const dir = tempDir('delivery-crash-');

  beforeAll(async () => {
    cluster = await startCluster({
      s3: 's3rver',
      // decrypt starts later: first a replica that dies right after its first advance.
      replicas: { decrypt: 0 },
      env: { IMAGING_SWEEP_INTERVAL_MS: '500', IMAGING_REDRIVE_IDLE_MS: '3000', IMAGING_LEASE_MS: '5000' },
    });
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  test('the task advanced by a process that died before publishing completes', async () => {
    const doomed = await cluster.startStage('decrypt', { IMAGING_TEST_EXIT_AFTER_ADVANCE: 'decrypt' });
    const id = await cluster.importVolume(smallDisk(dir, 1), 'crash/');
    expect(await doomed.exited).toBe(86);
    // The task is a state ahead and its next event was never published.
    expect((await cluster.tasks.get(id))!.state).toBe('bundle-decrypted');
    await cluster.startStage('decrypt');
    const [done] = await cluster.waitEnded([id], 60_000);
    expect(done.state).toBe('completed');
    expect(states(done)).toEqual(COMPLETED_PATH);
    expect(done.artifacts.image!.sha256).toBe(await fileSha256(join(dir, 'disk-1.raw')));
  });

  test('20 tasks in flight across a NATS kill -9 and restart all complete, each once', async () => {
    const disks = Array.from({ length: 20 }, (_, i) => smallDisk(dir, 100 + i));
    const ids = await Promise.all(disks.map((disk, i) => cluster.importVolume(disk, `restart-${i}/`)));
    // Restart while they are spread over the stages.
    await new Promise((r) => setTimeout(r, 1500));
    const before = await Promise.all(ids.map((id) => cluster.tasks.get(id)));
    await cluster.nats.restart({ signal: 'SIGKILL', downMs: 2000 });
    const done = await cluster.waitEnded(ids, 180_000);
    expect(done.map((d) => d.state)).toEqual(ids.map(() => 'completed'));
    for (const doc of done) expect(states(doc)).toEqual(COMPLETED_PATH);
    for (let i = 0; i < ids.length; i++) expect(done[i].artifacts.image!.sha256).toBe(await fileSha256(disks[i]));
    // Not all were done before the restart (otherwise the test proved nothing).
    expect(before.filter((d) => d!.state === 'completed').length).toBeLessThan(ids.length);
  });
});

describeWithMoto('two convert replicas, an upload completion slower than the ack wait', () => {
  let cluster: Cluster;
  const dir = tempDir('delivery-ackwait-');

  beforeAll(async () => {
    cluster = await startCluster({
      s3: 'moto',
      replicas: { convert: 2 },
      stageEnv: { convert: { IMAGING_ACK_WAIT_MS: '1500' } },
      proxy: { completeDelayMs: 5000 },
    });
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  test('the task is converted once: one CreateMultipartUpload, one disk-converted', async () => {
    // Larger than a part (8 MiB at the default memory bound), so the image goes up as a multipart upload.
    const disk = smallDisk(dir, 7, 24 * MiB + 511);
    const id = await cluster.importVolume(disk, 'slow/');
    const [done] = await cluster.waitEnded([id], 120_000);
    expect(done.state).toBe('completed');
    expect(states(done)).toEqual(COMPLETED_PATH);
    const creates = cluster.s3Requests.filter((r) => r.method === 'POST' && r.url.includes(`/images/${id}/`) && /[?&]uploads(=|&|$)/.test(r.url));
    const completes = cluster.s3Requests.filter((r) => r.method === 'POST' && r.url.includes(`/images/${id}/`) && /[?&]uploadId=/.test(r.url));
    expect(creates).toHaveLength(1);
    expect(completes).toHaveLength(1);
    // The completion really outlasted the ack wait (1.5 s): answered 5 s after it was asked, before validation.
    expect(done.history.find((h) => h.to === 'validated')!.at >= new Date(completes[0].at + 5000).toISOString()).toBe(true);
    expect(done.artifacts.image!.sha256).toBe(await fileSha256(disk));
  });
});

describeWithMoto('kill -9 of convert halfway through a 1 GiB VMDK, a second replica running', () => {
  let cluster: Cluster;
  const dir = tempDir('delivery-kill-');
  let vmdk: string;
  let reference: string;

  beforeAll(async () => {
    // 1 GiB virtual, 24 MiB of seeded data in 12 places: streamOptimized keeps it about that big.
    const raw = join(dir, 'source.raw');
    execFileSync('qemu-img', ['create', '-q', '-f', 'raw', raw, '1G']);
    const fd = openSync(raw, 'r+');
    for (let i = 0; i < 12; i++) writeSync(fd, seededBytes(2 * MiB, 500 + i), 0, 2 * MiB, i * 85 * MiB + 4096);
    closeSync(fd);
    vmdk = join(dir, 'disk.vmdk');
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', raw, vmdk]);
    const back = join(dir, 'reference.raw');
    execFileSync('qemu-img', ['convert', '-q', '-f', 'vmdk', '-O', 'raw', vmdk, back]);
    reference = await fileSha256(back);
    cluster = await startCluster({
      s3: 'moto',
      replicas: { convert: 2 },
      // A dead replica's lease and delivery run out within seconds.
      stageEnv: { convert: { IMAGING_LEASE_MS: '3000', IMAGING_ACK_WAIT_MS: '3000', IMAGING_MEMORY_LIMIT_MB: '64' } },
    });
  }, 180_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  test('the task completes byte-identical to qemu-img, nothing left behind', async () => {
    const id = await cluster.importVolume(vmdk, 'kill/', 'VMDK');
    // Wait until a replica holds the task and has written part of it, then kill that replica.
    const until = Date.now() + 120_000;
    let victim;
    let convertedAtKill: number;
    for (;;) {
      const doc = (await cluster.tasks.get(id))!;
      if (doc.state !== 'bundle-decrypted' && doc.state !== 'manifest-received' && doc.state !== 'pending-upload') throw new Error(`the conversion ended before the kill: ${doc.state}`);
      const pid = doc.lease?.stage === 'convert' ? Number(doc.lease.holder.split('/')[1]) : undefined;
      if (pid && doc.bytesConverted > 0) {
        victim = cluster.stages.find((p) => p.stage === 'convert' && p.pid === pid);
        convertedAtKill = doc.bytesConverted;
        break;
      }
      if (Date.now() > until) throw new Error('the conversion did not start');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(victim).toBeDefined();
    await cluster.kill(victim!);
    console.log(`convert replica ${victim!.pid} killed with SIGKILL after ${Math.round(convertedAtKill / 2 ** 20)} MiB of 1024 MiB converted`);
    expect(convertedAtKill).toBeLessThan(2 ** 30);

    const [done] = await cluster.waitEnded([id], 180_000);
    expect([done.state, done.statusMessage]).toEqual(['completed', '']);
    expect(states(done)).toEqual(COMPLETED_PATH);
    // The surviving replica's attempt wrote the output, under its own attempt's key.
    expect(done.artifacts.image!.key).toMatch(new RegExp(`^images/${id}/attempt-([2-9]|\\d\\d+)/disk\\.raw$`));
    expect(done.artifacts.image!.size).toBe(2 ** 30);
    expect(await objectSha256(cluster, IMAGE_BUCKET, done.artifacts.image!.key)).toBe(reference);
    const uploads = (await cluster.s3.send(new ListMultipartUploadsCommand({ Bucket: IMAGE_BUCKET }))).Uploads ?? [];
    expect(uploads.map((u) => u.Key)).toEqual([]);
    const objects = (await cluster.s3.send(new ListObjectsV2Command({ Bucket: IMAGE_BUCKET }))).Contents ?? [];
    expect(objects.map((o) => o.Key)).toEqual([done.artifacts.image!.key]);
  });
});
