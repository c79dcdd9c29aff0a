/**
 * Export benchmark: a 2 GiB image exported by `imaging serve` to each format, next to
 * `qemu-img convert` from the same raw file to the same format, in one run.
 *
 *   npm run bench:export     (builds, then runs node dist/bench/export.js)
 *
 * The image is the conversion benchmark's disk (bench-support.ts makeBenchImage: MBR, a 1 GiB ext4
 * filled by mkfs.ext4 -d with this machine's libraries, text and random files, a random region,
 * random patches, zeros elsewhere). It sits in the image store of `imaging serve` (a child process,
 * so its peak RSS is its own, started afresh for each format) as an imported image and instance
 * would: the records are written into the service's task store, so no import runs first. Each
 * export is an ExportImage call (VMDK, VHD dynamic, VHD fixed through X-ImagingVhdType, RAW) or a
 * CreateInstanceExportTask with ContainerFormat ova, timed from the task's creation to its
 * completion as the task's history records them. Ours reads the image store and writes the
 * user's bucket on the bench object store (bench/bench-object-store.ts, its own process: S3 that
 * is not the limit); qemu-img converts file to file, which has no network in the way. So a
 * third figure, measured once: a plain S3 copy of the same bytes through the same server
 * (bench/convert-worker.ts PlainCopyJob: 8 ranged GETs at once of the image, the raw bytes
 * uploaded through our multipart sink with the stage's 8 MiB parts, 4 at once), the transport
 * with no conversion. Every output of ours is downloaded and held against the raw disk with
 * `qemu-img compare`.
 *
 * Environment: BENCH_SIZE_MIB (default 2048), BENCH_DIR (default a temp dir, removed afterwards),
 * BENCH_OUT_DIR (where outputs are written; default BENCH_DIR's), BENCH_ONLY (a regular
 * expression on the row labels).
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { CreateBucketCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { execFileSync } from 'child_process';
import { randomBytes } from 'crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { pipeline } from 'stream/promises';
import { Ec2Client } from '../cli/ec2-client';
import { SqliteTaskStore } from '../tasks/sqlite-store';
import { makeS3Client } from '../toolkit/io/object-storage';
import { compareWithRaw, log, makeBenchImage, qemuImg, runPlainCopyAsync, type TimedWorkerResult } from './bench-support';
import { peakRssMiB, startS3ServerProcess, startServeProcess } from './bench-processes';

const MiB = 1024 * 1024;
const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 2048);
const workDir = process.env.BENCH_DIR ?? mkdtempSync(join(tmpdir(), 'imaging-bench-export-'));
const outDir = process.env.BENCH_OUT_DIR ?? workDir;
const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY, 'i') : undefined;
const IMAGE_BUCKET = 'imaging-images';
const USER_BUCKET = 'bench-exports';
const SOURCE_KEY = 'images/import-ami-0bench0000000000/disk.raw';
const IDS = { image: 'ami-0be0c4000000000a1', snapshot: 'snap-0be0c4000000000a1', instance: 'i-0be0c4000000000a1', volume: 'vol-0be0c4000000000a1' };

interface Case {
  label: string;
  /** The EC2 call and its parameters. */
  action: 'ExportImage' | 'CreateInstanceExportTask';
  params: Record<string, string>;
  /** Output file extension, and qemu-img's format name to compare ours with the raw disk. */
  ext: string;
  qemuFormat: string;
  /** qemu-img convert's output options for the same format. */
  qemuArgs: string[];
}

const image = (format: string, extra: Record<string, string> = {}): Record<string, string> => ({
  ImageId: IDS.image, DiskImageFormat: format, 'S3ExportLocation.S3Bucket': USER_BUCKET, 'S3ExportLocation.S3Prefix': 'bench/', ...extra,
});

const CASES: Case[] = [
  { label: 'VMDK streamOptimized', action: 'ExportImage', params: image('VMDK'), ext: 'vmdk', qemuFormat: 'vmdk', qemuArgs: ['-O', 'vmdk', '-o', 'subformat=streamOptimized'] },
  { label: 'VHD dynamic', action: 'ExportImage', params: image('VHD'), ext: 'vhd', qemuFormat: 'vpc', qemuArgs: ['-O', 'vpc', '-o', 'subformat=dynamic,force_size=on'] },
  { label: 'VHD fixed', action: 'ExportImage', params: image('VHD', { 'X-ImagingVhdType': 'fixed' }), ext: 'vhd', qemuFormat: 'vpc', qemuArgs: ['-O', 'vpc', '-o', 'subformat=fixed,force_size=on'] },
  { label: 'RAW', action: 'ExportImage', params: image('RAW'), ext: 'raw', qemuFormat: 'raw', qemuArgs: ['-O', 'raw'] },
  {
    label: 'OVA (streamOptimized VMDK + OVF in a tar)',
    action: 'CreateInstanceExportTask',
    params: { InstanceId: IDS.instance, TargetEnvironment: 'vmware', 'ExportToS3.DiskImageFormat': 'VMDK', 'ExportToS3.ContainerFormat': 'ova', 'ExportToS3.S3Bucket': USER_BUCKET, 'ExportToS3.S3Prefix': 'bench/' },
    ext: 'ova',
    qemuFormat: 'vmdk',
    // qemu-img makes no OVA: its VMDK, then tar of it with a descriptor (timed together below).
    qemuArgs: ['-O', 'vmdk', '-o', 'subformat=streamOptimized'],
  },
];

interface Row {
  label: string;
  ours?: { seconds: number; peakRssMiB: number; outputBytes: number; check: string };
  qemu?: { seconds: number; outputBytes: number };
  note?: string;
}

/** The image and instance an import would have recorded, over the raw disk in the image store. */
async function seedRecords(dataDir: string, accessKeyId: string, size: number): Promise<void> {
  const store = SqliteTaskStore.open(join(dataDir, 'tasks.db'));
  try {
    const key = await store.getKey(accessKeyId);
    if (!key) throw new Error('the bootstrap account has no key in the task store');
    const accountId = key.accountId;
    const createdAt = new Date().toISOString();
    const source = { bucket: IMAGE_BUCKET, key: SOURCE_KEY, size };
    const sizeGiB = Math.ceil(size / 1024 ** 3);
    await store.putResource({ id: IDS.snapshot, kind: 'snapshot', accountId, taskId: 'import-ami-0bench0000000000', sizeGiB, image: source, createdAt });
    await store.putResource({ id: IDS.image, kind: 'image', accountId, taskId: 'import-ami-0bench0000000000', name: 'bench', architecture: 'x86_64', rootDeviceName: '/dev/sda1', snapshotIds: [IDS.snapshot], sizeGiB, createdAt });
    await store.putResource({ id: IDS.volume, kind: 'volume', accountId, taskId: 'import-i-0bench000', sizeGiB, image: source, createdAt });
    await store.putResource({ id: IDS.instance, kind: 'instance', accountId, taskId: 'import-i-0bench000', state: 'stopped', volumeIds: [IDS.volume], architecture: 'x86_64', createdAt });
  } finally {
    await store.close();
  }
}

/** Seconds from the task's creation to its completion, from its history in the task store. */
async function taskSeconds(dataDir: string, taskId: string): Promise<{ seconds: number; key: string }> {
  const store = SqliteTaskStore.open(join(dataDir, 'tasks.db'));
  try {
    const task = (await store.get(taskId))!;
    const done = task.history.find((entry) => entry.to === 'completed');
    if (!done) throw new Error(`${taskId} ended ${task.state}: ${task.statusMessage}`);
    return { seconds: (Date.parse(done.at) - Date.parse(task.createdAt)) / 1000, key: task.request.export!.s3Key };
  } finally {
    await store.close();
  }
}

async function waitForEnd(ec2: Ec2Client, action: Case['action'], taskId: string): Promise<void> {
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    if (action === 'ExportImage') {
      const task = (await ec2.call('DescribeExportImageTasks', { 'ExportImageTaskId.1': taskId })).exportImageTaskSet.item[0];
      if (task.status !== 'active' && task.status !== 'deleting') return;
    } else {
      const task = (await ec2.call('DescribeExportTasks', { 'ExportTaskId.1': taskId })).exportTaskSet.item[0];
      if (task.state !== 'active' && task.state !== 'cancelling') return;
    }
  }
}

async function download(s3: S3Client, key: string, path: string): Promise<void> {
  const object = await s3.send(new GetObjectCommand({ Bucket: USER_BUCKET, Key: key }));
  await pipeline(object.Body as NodeJS.ReadableStream, createWriteStream(path));
}

/** Our output against the raw disk; an OVA's VMDK is taken out of the tar first. */
function checkOurs(raw: string, path: string, c: Case): string {
  if (c.ext !== 'ova') return compareWithRaw(raw, path, c.qemuFormat);
  const unpacked = join(outDir, 'ova-members');
  rmSync(unpacked, { recursive: true, force: true });
  mkdirSync(unpacked);
  execFileSync('tar', ['-xf', path, '-C', unpacked]);
  const members = execFileSync('tar', ['-tf', path], { encoding: 'utf8' }).trim().split('\n');
  const disk = members.find((m) => m.endsWith('.vmdk'));
  const verdict = disk ? compareWithRaw(raw, join(unpacked, disk), 'vmdk') : 'no VMDK in the OVA';
  rmSync(unpacked, { recursive: true, force: true });
  return `${members[0]?.endsWith('.ovf') ? 'OVF first; ' : 'NO OVF FIRST; '}${verdict}`;
}

/** qemu-img convert to the same format, file to file (for the OVA: its VMDK, then tar with a descriptor). */
function runQemu(raw: string, c: Case): { seconds: number; outputBytes: number } {
  const out = join(outDir, `qemu.${c.ext === 'ova' ? 'vmdk' : c.ext}`);
  rmSync(out, { force: true });
  execFileSync('sync');
  let seconds = qemuImg(['convert', '-f', 'raw', ...c.qemuArgs, raw, out]);
  let outputBytes = statSync(out).size;
  if (c.ext === 'ova') {
    const ovf = join(outDir, 'qemu.ovf');
    writeFileSync(ovf, '<?xml version="1.0"?><Envelope/>\n');
    const ova = join(outDir, 'qemu.ova');
    const started = process.hrtime.bigint();
    execFileSync('tar', ['-cf', ova, '-C', outDir, 'qemu.ovf', 'qemu.vmdk']);
    seconds += Number(process.hrtime.bigint() - started) / 1e9;
    outputBytes = statSync(ova).size;
    rmSync(ova, { force: true });
    rmSync(ovf, { force: true });
  }
  rmSync(out, { force: true });
  return { seconds, outputBytes };
}

async function main(): Promise<void> {
  mkdirSync(outDir, { recursive: true });
  const raw = join(workDir, 'bench-export.raw');
  if (!existsSync(raw) || statSync(raw).size !== sizeMiB * MiB) {
    log(`making the ${sizeMiB} MiB benchmark disk (sfdisk + mkfs.ext4 -d) …`);
    makeBenchImage(raw, sizeMiB, workDir);
  }
  const size = statSync(raw).size;
  const storeDir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : workDir, 'imaging-bench-export-store-'));
  const store = await startS3ServerProcess('bench-store', storeDir);
  const s3 = makeS3Client({ endpoint: store.endpoint, region: 'us-east-1', accessKeyId: 'BENCH', secretAccessKey: 'BENCH', forcePathStyle: true });
  const creds = { accessKeyId: 'AKIABENCHEXPORT00001', secretAccessKey: randomBytes(20).toString('hex') };
  const dataDir = join(workDir, 'data');
  rmSync(dataDir, { recursive: true, force: true });
  const rows: Row[] = [];
  let plainCopy: TimedWorkerResult | undefined;
  try {
    await s3.send(new CreateBucketCommand({ Bucket: IMAGE_BUCKET }));
    await s3.send(new CreateBucketCommand({ Bucket: USER_BUCKET }));
    log('putting the disk into the image store …');
    await new Upload({ client: s3, params: { Bucket: IMAGE_BUCKET, Key: SOURCE_KEY, Body: createReadStream(raw, { highWaterMark: 8 * MiB }) }, partSize: 16 * MiB, queueSize: 4 }).done();
    log('plain S3 copy (the transport alone) …');
    plainCopy = await runPlainCopyAsync({
      input: `s3://${IMAGE_BUCKET}/${SOURCE_KEY}`, output: `s3://${USER_BUCKET}/plain-copy.raw`, uploadFile: raw, s3Endpoint: store.endpoint,
      getStreams: 8, partSize: 8 * MiB, queueSize: 4,
    });
    let seeded = false;
    for (const c of CASES) {
      if (only && !only.test(c.label)) continue;
      const row: Row = { label: c.label };
      rows.push(row);
      log(`${c.label}: imaging serve …`);
      const serve = await startServeProcess(dataDir, store.endpoint, creds);
      try {
        if (!seeded) {
          await seedRecords(dataDir, creds.accessKeyId, size);
          seeded = true;
        }
        const ec2 = new Ec2Client(serve.ec2, 'us-east-1', creds);
        const created = await ec2.call(c.action, c.params);
        const taskId = c.action === 'ExportImage' ? created.exportImageTaskId : created.exportTask.exportTaskId;
        await waitForEnd(ec2, c.action, taskId);
        const peak = peakRssMiB(serve.pid);
        const { seconds, key } = await taskSeconds(dataDir, taskId);
        const ours = join(outDir, `ours.${c.ext}`);
        await download(s3, key, ours);
        row.ours = { seconds, peakRssMiB: peak, outputBytes: statSync(ours).size, check: checkOurs(raw, ours, c) };
        rmSync(ours, { force: true });
      } catch (error) {
        row.note = `ours failed: ${(error as Error).message}`;
      } finally {
        await serve.stop();
      }
      log(`${c.label}: qemu-img …`);
      row.qemu = runQemu(raw, c);
    }
  } finally {
    s3.destroy();
    await store.stop();
    rmSync(storeDir, { recursive: true, force: true });
    if (!process.env.BENCH_DIR) rmSync(workDir, { recursive: true, force: true });
  }
  print(rows, size, plainCopy);
}

function print(rows: Row[], size: number, plainCopy: TimedWorkerResult | undefined): void {
  const mibs = (seconds: number) => (size / MiB / seconds).toFixed(0);
  const out = (bytes: number) => `${(bytes / MiB).toFixed(0)}`;
  console.log(`Export of a ${size / MiB} MiB disk (bench-support makeBenchImage), ${new Date().toISOString()}; the machine is shared with other work.`);
  console.log('Ours: imaging serve, image store → user bucket on the bench object store (S3 → S3, loopback), task creation → completed.');
  console.log('qemu-img: convert from the raw file to a file of the same format (no network; for the OVA, its VMDK + tar).');
  if (plainCopy) {
    console.log(`Plain S3 copy of the raw bytes through the same server (no conversion): ${plainCopy.seconds.toFixed(2)} s, ${mibs(plainCopy.seconds)} MiB/s, peak RSS ${Math.round(plainCopy.peakRssBytes / MiB)} MiB.`);
  }
  console.log('');
  console.log('| format | ours s | ours MiB/s | qemu-img s | qemu-img MiB/s | ours / qemu-img time | ours / plain S3 copy time | serve peak RSS MiB | output MiB ours / qemu-img | check of ours |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const o = r.ours;
    const q = r.qemu;
    console.log(
      `| ${r.label} | ${o ? o.seconds.toFixed(2) : '—'} | ${o ? mibs(o.seconds) : '—'} | ${q ? q.seconds.toFixed(2) : '—'} | ${q ? mibs(q.seconds) : '—'} | ` +
        `${o && q ? (o.seconds / q.seconds).toFixed(2) : '—'} | ${o && plainCopy ? (o.seconds / plainCopy.seconds).toFixed(2) : '—'} | ${o ? o.peakRssMiB : '—'} | ${o ? out(o.outputBytes) : '—'} / ${q ? out(q.outputBytes) : '—'} | ${o ? o.check : r.note ?? ''} |`,
    );
  }
}

main().catch((error) => {
  console.error(`bench failed: ${(error as Error).message}`);
  process.exit(1);
});
