/**
 * Conversion benchmark: our toolkit against `qemu-img convert` on the same 2 GiB image, in one
 * run.  `npm run bench:convert` (builds, then runs node dist/bench/convert.js).
 *
 * Every "ours" conversion runs in its own process (bench/convert-worker.ts) so its peak RSS
 * (VmHWM) is its own; the S3 server runs in a third process. Every output is checked: raw
 * outputs against qemu-img's by SHA-256, VMDK and VHD outputs by `qemu-img compare` with the raw
 * disk they were made from. Our times are given twice: the conversion inside the worker, and the
 * worker's whole process (Node's start and module loading included, as qemu-img's are).
 *
 * Two tables. File to file: ours against qemu-img. S3 to S3: the target is ours within 1.3× of
 * our own file-to-file time for the same conversion, peak RSS under 256 MiB. Those rows run on
 * the bench object store (bench/bench-object-store.ts), an S3 server fast enough not to be the
 * limit, and are also held against a plain copy of the same bytes through the same server, which
 * does the same transport work as ours (parallel ranged GETs of the input; qemu-img's output
 * uploaded through our sink with the same parts, zero parts copied server-side as ours are) but
 * no conversion. One row runs on s3rver, our compatibility server, to show what the server
 * itself costs.
 *
 * Environment: BENCH_SIZE_MIB (default 2048), BENCH_DIR (default a temp dir, removed afterwards),
 * BENCH_KEEP_IMAGES=1 (with BENCH_DIR: reuse and keep the input images between runs),
 * BENCH_ONLY (a regular expression: run only the rows whose label matches; S3 rows are matched as
 * e.g. "S3 raw → S3 raw (s3rver)" or "S3 VMDK → S3 raw (bench store)"),
 * BENCH_REPEAT (default 1: run each row this many times and report the median; in a file row our
 * runs and qemu-img's alternate),
 * BENCH_PART_MIB, BENCH_QUEUE (S3 upload part size in MiB and parts at once; default 8 and 4),
 * BENCH_READ_CONCURRENCY (source reads in flight; default convertImage's),
 * BENCH_STORE_DIR (where the bench store keeps objects; default /dev/shm, a tmpfs),
 * BENCH_OUT_DIR (where file rows write their outputs; e.g. /dev/shm, so that the disk's
 * writeback, which makes single runs vary 3×, is out of the timing; default BENCH_DIR's),
 * BENCH_PIN=1 (ours and qemu-img on CPU 0, the S3 server alone on CPU 1: S3 rows with the file
 * rows' compute, as against a remote S3).
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import { createReadStream, createWriteStream, existsSync, mkdtempSync, rmSync, statSync } from 'fs';
import { cpus, tmpdir } from 'os';
import { pipeline } from 'stream/promises';
import { join } from 'path';
import type { DiskImageWriter } from '../toolkit/formats/format';
import { makeS3Client } from '../toolkit/io/object-storage';
import { compareWithRaw, cpuSecondsOf, log, makeBenchImage, pinned, qemuImg, runOurs, runPlainCopy, sha256File, type TimedWorkerResult } from './bench-support';
import { startS3ServerProcess } from './bench-processes';
import type { UploadTuning } from './convert-worker';
import type { S3ServerKind } from './s3-server-process';

const MiB = 1024 * 1024;
const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 2048);
const workDir = process.env.BENCH_DIR ?? mkdtempSync(join(tmpdir(), 'imaging-bench-'));
/** Where file rows write their outputs (ours and qemu-img's alike): BENCH_OUT_DIR, else the work directory. */
const outDir = process.env.BENCH_OUT_DIR ?? workDir;
const keepImages = Boolean(process.env.BENCH_DIR) && process.env.BENCH_KEEP_IMAGES === '1';
const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY, 'i') : undefined;
const repeat = Math.max(1, Number(process.env.BENCH_REPEAT ?? 1));
/**
 * 8 MiB parts rather than the sink's default 16: the parts are memory the process holds
 * ((queue + 1) × part), and on loopback the part size does not change the time.
 */
const upload: Required<UploadTuning> = { partSize: Number(process.env.BENCH_PART_MIB ?? 8) * MiB, queueSize: Number(process.env.BENCH_QUEUE ?? 4) };
const readConcurrency = process.env.BENCH_READ_CONCURRENCY ? Number(process.env.BENCH_READ_CONCURRENCY) : undefined;
/** Ranged GETs at once in the plain copy: convertImage's default read concurrency. */
const COPY_GET_STREAMS = 8;
const RSS_BOUND = 256 * MiB;

/**
 * Runs `measure` `repeat` times and keeps the run with the median time (other processes may load
 * the cores). Before each run: `output` is removed, so no run pays for truncating the last one's
 * file, and `sync` writes back what earlier runs left dirty; left alone, that writeback lands on
 * whichever run comes next (measured: the same qemu-img run 0.35 s or 2.9 s).
 */
function median<T extends { seconds: number }>(output: string, measure: () => T): T {
  return middle(Array.from({ length: repeat }, () => measureAfresh(output, measure)));
}

/**
 * Like median, for two measurements held against each other: their runs alternate (a, b, a, b…)
 * so that a slow spell of the machine (this disk has one: the same run at 0.35 s or 1.2 s) falls
 * on both of them alike.
 */
function pairedMedians<A extends { seconds: number }, B extends { seconds: number }>(
  a: { output: string; measure: () => A },
  b: { output: string; measure: () => B },
): { a: A; b: B; bestA: number; bestB: number } {
  const runsA: A[] = [];
  const runsB: B[] = [];
  for (let i = 0; i < repeat; i++) {
    runsA.push(measureAfresh(a.output, a.measure));
    runsB.push(measureAfresh(b.output, b.measure));
  }
  const best = (runs: { seconds: number }[]) => Math.min(...runs.map((run) => run.seconds));
  return { a: middle(runsA), b: middle(runsB), bestA: best(runsA), bestB: best(runsB) };
}

function measureAfresh<T>(output: string, measure: () => T): T {
  rmSync(output, { force: true });
  execFileSync('sync');
  return measure();
}

function middle<T extends { seconds: number }>(runs: T[]): T {
  const sorted = [...runs].sort((a, b) => a.seconds - b.seconds);
  return sorted[(sorted.length - 1) >> 1];
}

interface Row {
  label: string;
  ours?: { seconds: number; peakRssBytes: number; processSeconds: number };
  qemu?: { seconds: number };
  /** The fastest run of each, over the repeats. */
  best?: { ours: number; qemu: number };
  identical?: boolean;
  /** For VMDK/VHD outputs: qemu-img compare's verdict on ours against the raw disk. */
  check?: string;
  note?: string;
}

/** qemu-img's name for one of our output formats. */
function qemuFormatOf(format: DiskImageWriter['name']): string {
  return format === 'vhd' ? 'vpc' : format;
}

/** Our file-to-file time per conversion, for the S3 rows' S3/file ratio. */
const fileSeconds = new Map<string, number>();

/** `raw`: the raw disk the input was made from (what a VMDK/VHD output must read back as). */
async function fileRow(label: string, input: string, qemuInputFormat: string, outputFormat: DiskImageWriter['name'], qemuOutput: string[], raw: string): Promise<Row> {
  const oursOut = join(outDir, `ours.${outputFormat}`);
  const qemuOut = join(outDir, `qemu.${outputFormat}`);
  const row: Row = { label };
  try {
    const qemu = { output: qemuOut, measure: () => ({ seconds: qemuImg(['convert', '-f', qemuInputFormat, ...qemuOutput, input, qemuOut]) }) };
    try {
      const paired = pairedMedians(qemu, { output: oursOut, measure: () => runOurs({ input, output: oursOut, outputFormat }) });
      [row.qemu, row.ours] = [paired.a, paired.b];
      row.best = { qemu: paired.bestA, ours: paired.bestB };
      fileSeconds.set(label, row.ours.seconds);
    } catch (error) {
      row.qemu ??= median(qemu.output, qemu.measure);
      row.note = `ours skipped: ${(error as Error).message}`;
      return row;
    }
    if (outputFormat === 'raw') row.identical = (await sha256File(oursOut)) === (await sha256File(qemuOut));
    else {
      row.check = compareWithRaw(raw, oursOut, qemuFormatOf(outputFormat));
      row.note = `output ${mib(statSync(oursOut).size)} MiB (qemu-img ${mib(statSync(qemuOut).size)} MiB)`;
    }
    return row;
  } finally {
    rmSync(oursOut, { force: true });
    rmSync(qemuOut, { force: true });
  }
}

/** Our file-to-file time for `label`: from its file row when that ran, else measured now (ours only). */
function ourFileSeconds(label: string, input: string, outputFormat: DiskImageWriter['name']): number {
  const known = fileSeconds.get(label);
  if (known !== undefined) return known;
  const output = join(outDir, `ours-file.${outputFormat}`);
  try {
    const seconds = median(output, () => runOurs({ input, output, outputFormat })).seconds;
    fileSeconds.set(label, seconds);
    return seconds;
  } finally {
    rmSync(output, { force: true });
  }
}

interface S3Server {
  kind: S3ServerKind;
  endpoint: string;
  pid: number;
  s3: S3Client;
  stop(): Promise<void>;
}

/**
 * Where the bench store keeps its files: tmpfs when there is one, so its writes cost no
 * writeback to disk (which would take CPU from the processes being timed).
 */
function storeDirectory(): string {
  const base = process.env.BENCH_STORE_DIR ?? (existsSync('/dev/shm') ? '/dev/shm' : workDir);
  return mkdtempSync(join(base, 'imaging-bench-store-'));
}

async function startS3Process(kind: S3ServerKind): Promise<S3Server> {
  const directory = storeDirectory();
  const server = await startS3ServerProcess(kind, directory, { pinned: true });
  const endpoint = server.endpoint;
  const s3 = makeS3Client({ endpoint, region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', forcePathStyle: true });
  await s3.send(new CreateBucketCommand({ Bucket: 'bench' }));
  return {
    kind,
    endpoint,
    pid: server.pid,
    s3,
    async stop() {
      s3.destroy();
      await server.stop();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

async function uploadFile(s3: S3Client, key: string, path: string): Promise<void> {
  await new Upload({ client: s3, params: { Bucket: 'bench', Key: key, Body: createReadStream(path, { highWaterMark: 8 * MiB }) }, partSize: 16 * MiB, queueSize: 4 }).done();
}

async function downloadFile(s3: S3Client, key: string, path: string): Promise<void> {
  const object = await s3.send(new GetObjectCommand({ Bucket: 'bench', Key: key }));
  await pipeline(object.Body as NodeJS.ReadableStream, createWriteStream(path));
}

async function objectExists(s3: S3Client, key: string): Promise<boolean> {
  return s3.send(new HeadObjectCommand({ Bucket: 'bench', Key: key })).then(
    () => true,
    () => false,
  );
}

async function deleteObject(s3: S3Client, key: string): Promise<void> {
  await s3.send(new DeleteObjectCommand({ Bucket: 'bench', Key: key }));
}

async function sha256Object(s3: S3Client, key: string): Promise<string> {
  const hash = createHash('sha256');
  const object = await s3.send(new GetObjectCommand({ Bucket: 'bench', Key: key }));
  for await (const chunk of object.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
  return hash.digest('hex');
}

interface S3Case {
  label: string;
  server: S3ServerKind;
  input: string;
  qemuInputFormat: string;
  outputFormat: DiskImageWriter['name'];
  qemuOutput: string[];
  /** The file row timing the same conversion. */
  fileLabel: string;
}

interface S3Row {
  label: string;
  server: S3ServerKind;
  ours?: TimedWorkerResult & { serverCpuSeconds: number };
  file?: number;
  copy?: TimedWorkerResult;
  qemu?: { seconds: number };
  check?: string;
  note?: string;
}

/**
 * One S3 → S3 case, `repeat` times, interleaved (qemu-img, plain copy, ours) so a neighbour's
 * load hits all three alike: medians reported. qemu-img's output file is what the plain copy
 * uploads, so the copy moves exactly the bytes a conversion has to move.
 */
async function s3Row(server: S3Server, test: S3Case): Promise<S3Row> {
  const row: S3Row = { label: test.label, server: test.server };
  const { s3, endpoint } = server;
  const input = `in.${test.qemuInputFormat}`;
  const outputs = { ours: `ours.${test.outputFormat}`, qemu: `qemu.${test.outputFormat}`, copy: `copy.${test.outputFormat}` };
  const qemuOut = join(workDir, `scratch.${test.outputFormat}`);
  try {
    row.file = ourFileSeconds(test.fileLabel, test.input, test.outputFormat);
    if (!(await objectExists(s3, input))) {
      log(`    uploading ${test.input} to ${server.kind}...`);
      await uploadFile(s3, input, test.input);
    }
    const qemuRuns: { seconds: number }[] = [];
    const copyRuns: TimedWorkerResult[] = [];
    const ourRuns: (TimedWorkerResult & { serverCpuSeconds: number })[] = [];
    for (let i = 0; i < repeat; i++) {
      qemuRuns.push(await qemuThroughS3(s3, test, input, outputs.qemu, qemuOut));
      await deleteObject(s3, outputs.qemu); // only timed; and the bench store is tmpfs, i.e. memory

      copyRuns.push(runPlainCopy({ input: `s3://bench/${input}`, output: `s3://bench/${outputs.copy}`, uploadFile: qemuOut, s3Endpoint: endpoint, getStreams: COPY_GET_STREAMS, ...upload }));
      await deleteObject(s3, outputs.copy);

      const serverCpuBefore = cpuSecondsOf(server.pid);
      const ours = runOurs({ input: `s3://bench/${input}`, output: `s3://bench/${outputs.ours}`, outputFormat: test.outputFormat, s3Endpoint: endpoint, readConcurrency, ...upload });
      ourRuns.push({ ...ours, serverCpuSeconds: cpuSecondsOf(server.pid) - serverCpuBefore });
      log(`    run ${i + 1}: ours ${ours.seconds.toFixed(2)} s, plain copy ${copyRuns[i].seconds.toFixed(2)} s, qemu-img ${qemuRuns[i].seconds.toFixed(2)} s`);
    }
    row.qemu = middle(qemuRuns);
    row.copy = middle(copyRuns);
    row.ours = middle(ourRuns);
    row.check = await checkOutput(s3, outputs.ours, test, qemuOut);
  } catch (error) {
    row.note = `skipped: ${(error as Error).message}`;
  } finally {
    rmSync(qemuOut, { force: true });
    for (const key of Object.values(outputs)) await deleteObject(s3, key).catch(() => undefined);
  }
  return row;
}

/**
 * The baseline a scratch-disk pipeline would use: download the input to a local file, qemu-img
 * convert it, upload the result (qemu-img's own http driver stalls against s3rver). qemu-img's
 * output stays in `output` for the plain copy and the check.
 */
async function qemuThroughS3(s3: S3Client, test: S3Case, inputKey: string, outputKey: string, output: string): Promise<{ seconds: number }> {
  const download = join(workDir, 'scratch.in');
  const started = process.hrtime.bigint();
  try {
    await downloadFile(s3, inputKey, download);
    qemuImg(['convert', '-f', test.qemuInputFormat, ...test.qemuOutput, download, output]);
  } finally {
    rmSync(download, { force: true });
  }
  await uploadFile(s3, outputKey, output);
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

/**
 * Raw output must be qemu-img's bytes exactly (SHA-256 of the whole object); other formats are
 * downloaded and must read back as the raw disk they were made from (qemu-img compare).
 */
async function checkOutput(s3: S3Client, key: string, test: S3Case, qemuOut: string): Promise<string> {
  if (test.outputFormat === 'raw') return (await sha256Object(s3, key)) === (await sha256File(qemuOut)) ? 'same bytes as qemu-img' : 'BYTES DIFFER';
  const size = (await s3.send(new HeadObjectCommand({ Bucket: 'bench', Key: key }))).ContentLength ?? 0;
  const local = join(workDir, `check.${test.outputFormat}`);
  try {
    await downloadFile(s3, key, local);
    return `${compareWithRaw(test.input, local, qemuFormatOf(test.outputFormat))}; ${mib(size)} MiB (qemu-img ${mib(statSync(qemuOut).size)} MiB)`;
  } finally {
    rmSync(local, { force: true });
  }
}

function serverName(kind: S3ServerKind): string {
  return kind === 's3rver' ? 's3rver' : 'bench store';
}

function mib(bytes: number): string {
  return (bytes / MiB).toFixed(0);
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a !== undefined && b !== undefined ? (a / b).toFixed(2) : '-';
}

function printTable(header: string[], lines: string[][]): void {
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => line[i].length)));
  const format = (cells: string[]): string => cells.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd();
  process.stdout.write(`${format(header)}\n${format(widths.map((w) => '-'.repeat(w)))}\n${lines.map(format).join('\n')}\n`);
}

function printFileTable(rows: Row[]): void {
  printTable(
    ['conversion', 'ours (s)', 'ours process (s)', 'qemu-img (s)', 'ours/qemu', 'process/qemu', 'best of each', 'our peak RSS', 'check', 'note'],
    rows.map((row) => [
      row.label,
      row.ours ? row.ours.seconds.toFixed(2) : '-',
      row.ours ? row.ours.processSeconds.toFixed(2) : '-',
      row.qemu ? row.qemu.seconds.toFixed(2) : '-',
      ratio(row.ours?.seconds, row.qemu?.seconds),
      ratio(row.ours?.processSeconds, row.qemu?.seconds),
      row.best ? `${row.best.ours.toFixed(2)} / ${row.best.qemu.toFixed(2)} = ${ratio(row.best.ours, row.best.qemu)}` : '-',
      row.ours ? `${mib(row.ours.peakRssBytes)} MiB` : '-',
      row.check ?? (row.identical === undefined ? '' : row.identical ? 'same bytes as qemu-img' : 'BYTES DIFFER'),
      row.note ?? '',
    ]),
  );
}

function printS3Table(rows: S3Row[]): void {
  printTable(
    ['S3 → S3', 'server', 'ours (s)', 'ours process (s)', 'peak RSS', 'file (s)', 'S3/file', 'copy (s)', 'copy process (s)', 'ours/copy', 'qemu-img (s)', 'ours/qemu', 'process/qemu', 'CPU ours+server (s)', 'check'],
    rows.map((row) => [
      row.label,
      serverName(row.server),
      row.ours ? row.ours.seconds.toFixed(2) : '-',
      row.ours ? row.ours.processSeconds.toFixed(2) : '-',
      row.ours ? `${mib(row.ours.peakRssBytes)} MiB${row.ours.peakRssBytes > RSS_BOUND ? ' (over)' : ''}` : '-',
      row.file !== undefined ? row.file.toFixed(2) : '-',
      ratio(row.ours?.seconds, row.file),
      row.copy ? row.copy.seconds.toFixed(2) : '-',
      row.copy ? row.copy.processSeconds.toFixed(2) : '-',
      ratio(row.ours?.seconds, row.copy?.seconds),
      row.qemu ? row.qemu.seconds.toFixed(2) : '-',
      ratio(row.ours?.seconds, row.qemu?.seconds),
      ratio(row.ours?.processSeconds, row.qemu?.seconds),
      row.ours ? `${row.ours.cpuSeconds.toFixed(1)} + ${row.ours.serverCpuSeconds.toFixed(1)}` : '-',
      row.note ?? row.check ?? '',
    ]),
  );
  process.stdout.write(
    [
      '',
      `ours      our converter, input object read by ranged GETs, output by multipart upload (${mib(upload.partSize)} MiB parts, ${upload.queueSize} at once), in its own`,
      `          process; peak RSS is that process's (bound ${mib(RSS_BOUND)} MiB). "ours" is the conversion timed inside the process, "ours process"`,
      "          the whole process, spawn to exit (Node's start and module loading included); ours/copy compares the in-process times.",
      'file      our own file-to-file time for the same conversion in this run; S3/file is the target (≤ 1.3). A raw output file',
      '          leaves zeros as holes, while a raw S3 object carries every byte.',
      `copy      the same transport work, no conversion: the input object read by ${COPY_GET_STREAMS} ranged GETs at once (our reader) while qemu-img's`,
      '          output file is uploaded through our multipart sink (same parts, queue and expected size; all-zero blocks given as zeros, so',
      '          zero parts are copied server-side where the server copies, as ours are). It differs from ours in: no decoding/encoding, and',
      "          the output's bytes come from a local file in the page cache. Timed inside its process; \"copy process\": spawn to exit.",
      'qemu-img  download → qemu-img convert → multipart upload, through the same server (whole processes and transfers; ours/qemu and',
      '          process/qemu hold our in-process and whole-process times against it).',
      pinned
        ? 'CPU       CPU seconds of our process (on CPU 0, as every file row) + of the server process (alone on CPU 1) during our run.'
        : `CPU       CPU seconds of our process + of the server process during our run; with ${cpus().length} CPUs the wall time is at least their sum / ${cpus().length}.`,
      '',
    ].join('\n'),
  );
}

async function main(): Promise<void> {
  log(`bench: ${sizeMiB} MiB image in ${workDir}`);
  // Pinned: this process (it downloads and uploads for the qemu-img S3 rows) and every child it
  // starts run on CPU 0; only the S3 server is moved to CPU 1.
  if (pinned) execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  const raw = join(workDir, 'disk.raw');
  const vmdk = join(workDir, 'disk.vmdk');
  const qcow2 = join(workDir, 'disk.qcow2');
  const vhd = join(workDir, 'disk.vhd');
  try {
    if (!(keepImages && [raw, vmdk, qcow2, vhd].every((file) => existsSync(file)))) {
      makeBenchImage(raw, sizeMiB, workDir);
      log('  making streamOptimized VMDK, compressed QCOW2 and dynamic VHD with qemu-img...');
      qemuImg(['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', raw, vmdk]);
      qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', '-c', raw, qcow2]);
      qemuImg(['convert', '-f', 'raw', '-O', 'vpc', raw, vhd]);
    }
    log(`  sizes: raw ${mib(statSync(raw).size)} MiB (allocated ${mib(statSync(raw).blocks * 512)}), vmdk ${mib(statSync(vmdk).size)}, qcow2 ${mib(statSync(qcow2).size)}, vhd ${mib(statSync(vhd).size)} MiB`);

    const rows: Row[] = [];
    const plan: [string, string, string, DiskImageWriter['name'], string[]][] = [
      ['VMDK streamOptimized → raw', vmdk, 'vmdk', 'raw', ['-O', 'raw']],
      ['QCOW2 compressed → raw', qcow2, 'qcow2', 'raw', ['-O', 'raw']],
      ['VHD dynamic → raw', vhd, 'vpc', 'raw', ['-O', 'raw']],
      ['raw → raw', raw, 'raw', 'raw', ['-O', 'raw']],
      ['raw → VMDK streamOptimized', raw, 'raw', 'vmdk', ['-O', 'vmdk', '-o', 'subformat=streamOptimized']],
      ['raw → VHD dynamic', raw, 'raw', 'vhd', ['-O', 'vpc']],
    ];
    for (const [label, input, qemuFormat, outputFormat, qemuOutput] of plan) {
      if (only && !only.test(label)) continue;
      log(`  ${label}...`);
      rows.push(await fileRow(label, input, qemuFormat, outputFormat, qemuOutput, raw));
    }

    const toRaw = ['-O', 'raw'];
    const toVmdk = ['-O', 'vmdk', '-o', 'subformat=streamOptimized'];
    const s3Cases: S3Case[] = [
      { label: 'S3 VMDK → S3 raw', server: 'bench-store', input: vmdk, qemuInputFormat: 'vmdk', outputFormat: 'raw', qemuOutput: toRaw, fileLabel: 'VMDK streamOptimized → raw' },
      { label: 'S3 raw → S3 VMDK', server: 'bench-store', input: raw, qemuInputFormat: 'raw', outputFormat: 'vmdk', qemuOutput: toVmdk, fileLabel: 'raw → VMDK streamOptimized' },
      { label: 'S3 raw → S3 raw', server: 'bench-store', input: raw, qemuInputFormat: 'raw', outputFormat: 'raw', qemuOutput: toRaw, fileLabel: 'raw → raw' },
      { label: 'S3 raw → S3 raw', server: 's3rver', input: raw, qemuInputFormat: 'raw', outputFormat: 'raw', qemuOutput: toRaw, fileLabel: 'raw → raw' },
    ];
    const s3Plan = s3Cases.filter((test) => !only || only.test(`${test.label} (${serverName(test.server)})`));
    const s3Rows: S3Row[] = [];
    for (const kind of ['bench-store', 's3rver'] as const) {
      const cases = s3Plan.filter((test) => test.server === kind);
      if (cases.length === 0) continue;
      const server = await startS3Process(kind);
      try {
        for (const test of cases) {
          log(`  ${test.label} on ${kind}...`);
          s3Rows.push(await s3Row(server, test));
        }
      } finally {
        await server.stop();
      }
    }

    const version = execFileSync('qemu-img', ['--version'], { encoding: 'utf8' }).split('\n')[0].replace(/^qemu-img version /, '');
    const repeats = repeat > 1 ? `, median of ${repeat}` : '';
    const cpuNote = pinned ? `${cpus().length} CPUs, pinned: ours and qemu-img on CPU 0, the S3 server on CPU 1 (BENCH_PIN=1)` : `${cpus().length} CPUs`;
    process.stdout.write(`\nConversion of a ${sizeMiB} MiB disk, ${cpuNote}, qemu-img ${version}${repeats}\n\n`);
    if (rows.length) {
      printFileTable(rows);
      process.stdout.write(
        "\nours: the conversion call, timed inside a Node process already started (the convert stage pays Node's start\n" +
          "and module loading once); ours process: that worker's whole process, spawn to exit. qemu-img: its whole process.\n" +
          'Runs alternate between the two. check: raw outputs hashed against qemu-img\'s; VMDK/VHD outputs by qemu-img compare\n' +
          'with the raw disk.\n' +
          'best of each: the fastest run of ours and of qemu-img; page-cache writeback on this disk makes single runs vary 3×.\n' +
          `outputs of the file rows: ${outDir}\n`,
      );
    }
    if (s3Rows.length) {
      process.stdout.write('\n');
      printS3Table(s3Rows);
    }
  } finally {
    if (!process.env.BENCH_DIR) rmSync(workDir, { recursive: true, force: true });
    else if (!keepImages) for (const file of [raw, vmdk, qcow2, vhd]) if (existsSync(file)) rmSync(file);
  }
}

main().catch((error) => {
  process.stderr.write(`error: ${(error as Error).message}\n`);
  process.exit(1);
});
