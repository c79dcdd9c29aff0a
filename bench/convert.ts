/**
 * Conversion benchmark: our toolkit against `qemu-img convert` on the same 2 GiB image, in one
 * run.  `npm run bench:convert` (builds, then runs node dist/bench/convert.js).
 *
 * Every "ours" conversion runs in its own process (bench/convert-worker.ts) so its peak RSS
 * (VmHWM) is its own; s3rver runs in a third process. Outputs that should be identical to
 * qemu-img's (conversions to raw) are compared by SHA-256.
 *
 * Environment: BENCH_SIZE_MIB (default 2048), BENCH_DIR (default a temp dir, removed afterwards),
 * BENCH_KEEP_IMAGES=1 (with BENCH_DIR: reuse and keep the input images between runs),
 * BENCH_ONLY (a regular expression: run only the rows whose label matches),
 * BENCH_REPEAT (default 1: run each row this many times and report the median).
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { CreateBucketCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { execFileSync, spawn } from 'child_process';
import { createReadStream, createWriteStream, existsSync, mkdtempSync, rmSync, statSync } from 'fs';
import { tmpdir } from 'os';
import { pipeline } from 'stream/promises';
import { join } from 'path';
import type { DiskImageWriter } from '../toolkit/formats/format';
import { makeS3Client } from '../toolkit/io/object-storage';
import { log, makeBenchImage, qemuImg, runOurs, sha256File } from './bench-support';

const MiB = 1024 * 1024;
const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 2048);
const workDir = process.env.BENCH_DIR ?? mkdtempSync(join(tmpdir(), 'imaging-bench-'));
const keepImages = Boolean(process.env.BENCH_DIR) && process.env.BENCH_KEEP_IMAGES === '1';
const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY, 'i') : undefined;
const repeat = Math.max(1, Number(process.env.BENCH_REPEAT ?? 1));

/** Runs `measure` `repeat` times and keeps the run with the median time (other processes may load the cores). */
function median<T extends { seconds: number }>(measure: () => T): T {
  const runs: T[] = [];
  for (let i = 0; i < repeat; i++) runs.push(measure());
  runs.sort((a, b) => a.seconds - b.seconds);
  return runs[(runs.length - 1) >> 1];
}

interface Row {
  label: string;
  ours?: { seconds: number; peakRssBytes: number };
  qemu?: { seconds: number };
  identical?: boolean;
  note?: string;
}

async function fileRow(label: string, input: string, qemuInputFormat: string, outputFormat: DiskImageWriter['name'], qemuOutput: string[]): Promise<Row> {
  const oursOut = join(workDir, `ours.${outputFormat}`);
  const qemuOut = join(workDir, `qemu.${outputFormat}`);
  const row: Row = { label };
  try {
    row.qemu = median(() => ({ seconds: qemuImg(['convert', '-f', qemuInputFormat, ...qemuOutput, input, qemuOut]) }));
    try {
      row.ours = median(() => runOurs({ input, output: oursOut, outputFormat }));
    } catch (error) {
      row.note = `ours skipped: ${(error as Error).message}`;
      return row;
    }
    if (outputFormat === 'raw') row.identical = (await sha256File(oursOut)) === (await sha256File(qemuOut));
    else row.note = `output ${mib(statSync(oursOut).size)} MiB (qemu-img ${mib(statSync(qemuOut).size)} MiB)`;
    return row;
  } finally {
    rmSync(oursOut, { force: true });
    rmSync(qemuOut, { force: true });
  }
}

async function startS3Process(): Promise<{ endpoint: string; stop(): void }> {
  const child = spawn(process.execPath, [join(__dirname, 's3-server-process.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const endpoint = await new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (chunk) => {
      text += chunk;
      if (text.includes('\n')) resolve(text.trim());
    });
    child.once('exit', (code) => reject(new Error(`s3rver process exited with ${code}`)));
  });
  return { endpoint, stop: () => child.kill('SIGTERM') };
}

async function uploadFile(s3: S3Client, bucket: string, key: string, path: string): Promise<void> {
  await new Upload({ client: s3, params: { Bucket: bucket, Key: key, Body: createReadStream(path, { highWaterMark: 8 * MiB }) }, partSize: 16 * MiB, queueSize: 4 }).done();
}

async function s3Row(rawImage: string): Promise<Row> {
  const row: Row = { label: 'S3 raw → S3 raw (s3rver)' };
  const server = await startS3Process();
  const s3 = makeS3Client({ endpoint: server.endpoint, region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', forcePathStyle: true });
  const scratch = join(workDir, 'scratch.raw');
  try {
    await s3.send(new CreateBucketCommand({ Bucket: 'bench' }));
    log('  uploading the raw image to s3rver...');
    await uploadFile(s3, 'bench', 'in.raw', rawImage);
    log('  converting S3 → S3 with ours...');
    row.ours = median(() => runOurs({ input: 's3://bench/in.raw', output: 's3://bench/ours.raw', outputFormat: 'raw', s3Endpoint: server.endpoint }));
    log('  converting with qemu-img from a presigned URL...');
    // The baseline a scratch-disk pipeline would use: download to a local file, qemu-img
    // convert it, upload the result. (qemu-img's own http driver stalls against s3rver.)
    const started = process.hrtime.bigint();
    const download = scratch + '.in';
    const object = await s3.send(new GetObjectCommand({ Bucket: 'bench', Key: 'in.raw' }));
    await pipeline(object.Body as NodeJS.ReadableStream, createWriteStream(download));
    qemuImg(['convert', '-f', 'raw', '-O', 'raw', download, scratch]);
    rmSync(download);
    await uploadFile(s3, 'bench', 'qemu.raw', scratch);
    row.qemu = { seconds: Number(process.hrtime.bigint() - started) / 1e9 };
    row.note = 'qemu-img row: download → qemu-img convert → multipart upload';
  } finally {
    s3.destroy();
    server.stop();
    rmSync(scratch, { force: true });
  }
  return row;
}

function mib(bytes: number): string {
  return (bytes / MiB).toFixed(0);
}

function printTable(rows: Row[]): void {
  const header = ['conversion', 'ours (s)', 'qemu-img (s)', 'ours/qemu', 'our peak RSS', 'same bytes', 'note'];
  const lines = rows.map((row) => [
    row.label,
    row.ours ? row.ours.seconds.toFixed(2) : '-',
    row.qemu ? row.qemu.seconds.toFixed(2) : '-',
    row.ours && row.qemu ? (row.ours.seconds / row.qemu.seconds).toFixed(2) : '-',
    row.ours ? `${mib(row.ours.peakRssBytes)} MiB` : '-',
    row.identical === undefined ? '' : row.identical ? 'yes' : 'NO',
    row.note ?? '',
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => line[i].length)));
  const format = (cells: string[]): string => cells.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd();
  process.stdout.write(`${format(header)}\n${format(widths.map((w) => '-'.repeat(w)))}\n${lines.map(format).join('\n')}\n`);
}

async function main(): Promise<void> {
  log(`bench: ${sizeMiB} MiB image in ${workDir}`);
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
      ['raw → VMDK streamOptimized', raw, 'raw', 'vmdk', ['-O', 'vmdk', '-o', 'subformat=streamOptimized']],
      ['raw → VHD dynamic', raw, 'raw', 'vhd', ['-O', 'vpc']],
    ];
    for (const [label, input, qemuFormat, outputFormat, qemuOutput] of plan) {
      if (only && !only.test(label)) continue;
      log(`  ${label}...`);
      rows.push(await fileRow(label, input, qemuFormat, outputFormat, qemuOutput));
    }
    if (!only || only.test('S3 raw → S3 raw')) log('  S3 → S3...');
    if (!only || only.test('S3 raw → S3 raw')) rows.push(await s3Row(raw).catch((error: Error) => ({ label: 'S3 raw → S3 raw (s3rver)', note: `skipped: ${error.message}` })));
    process.stdout.write(`\nConversion of a ${sizeMiB} MiB disk, ${require('os').cpus().length} CPUs, qemu-img ${execFileSync('qemu-img', ['--version'], { encoding: 'utf8' }).split('\n')[0].replace(/^qemu-img version /, '')}\n\n`);
    printTable(rows);
  } finally {
    if (!process.env.BENCH_DIR) rmSync(workDir, { recursive: true, force: true });
    else if (!keepImages) for (const file of [raw, vmdk, qcow2, vhd]) if (existsSync(file)) rmSync(file);
  }
}

main().catch((error) => {
  process.stderr.write(`error: ${(error as Error).message}\n`);
  process.exit(1);
});
