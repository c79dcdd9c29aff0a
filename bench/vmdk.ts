/**
 * VMDK benchmark: the two streamOptimized conversions (VMDK → raw, raw → VMDK), ours against
 * `qemu-img convert` on the same files, each repeated, medians reported. Built by `npm run build`:
 *   node dist/bench/vmdk.js
 *
 * Environment: BENCH_SIZE_MIB (default 2048), BENCH_REPEAT (default 3), BENCH_DIR (default a temp
 * dir, removed afterwards; when set, disk.raw / disk.vmdk found there are reused),
 * BENCH_ONLY ('read' or 'write' for one of the two rows).
 * The test disk is the one bench/convert.ts makes (same recipe, repeated here so the two
 * benchmarks can change independently). Outputs are checked: VMDK → raw hashed against
 * qemu-img's raw, raw → VMDK read back by `qemu-img compare` against the raw disk. Our times are
 * given inside the worker process and for its whole process (spawn to exit), qemu-img's for its
 * whole process.
 */
import { execFileSync, spawnSync } from 'child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'fs';
import { cpus, tmpdir } from 'os';
import { join } from 'path';
import type { DiskImageWriter } from '../toolkit/formats/format';
import { log, makeBenchImage, median, qemuImg, runOurs, sha256File } from './bench-support';

const MiB = 1024 * 1024;
const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 2048);
const repeat = Math.max(1, Number(process.env.BENCH_REPEAT ?? 3));
const only = process.env.BENCH_ONLY;
const workDir = process.env.BENCH_DIR ?? mkdtempSync(join(tmpdir(), 'imaging-bench-vmdk-'));


interface Row {
  label: string;
  ours: number[];
  /** Our worker's whole process, spawn to exit. */
  oursProcess: number[];
  qemu: number[];
  peakRss: number;
  check: string;
}

async function row(label: string, input: string, qemuInput: string, outputFormat: DiskImageWriter['name'], qemuOutput: string[]): Promise<Row> {
  const oursOut = join(workDir, `ours.${outputFormat}`);
  const qemuOut = join(workDir, `qemu.${outputFormat}`);
  const result: Row = { label, ours: [], oursProcess: [], qemu: [], peakRss: 0, check: '' };
  try {
    // Interleaved, so a neighbour's load hits both sides alike.
    for (let i = 0; i < repeat; i++) {
      rmSync(qemuOut, { force: true });
      result.qemu.push(qemuImg(['convert', '-f', qemuInput, ...qemuOutput, input, qemuOut]));
      rmSync(oursOut, { force: true });
      const ours = runOurs({ input, output: oursOut, outputFormat });
      result.ours.push(ours.seconds);
      result.oursProcess.push(ours.processSeconds);
      result.peakRss = Math.max(result.peakRss, ours.peakRssBytes);
      log(`    run ${i + 1}: ours ${ours.seconds.toFixed(2)} s (process ${ours.processSeconds.toFixed(2)} s), qemu-img ${result.qemu[i].toFixed(2)} s`);
    }
    if (outputFormat === 'raw') {
      result.check = (await sha256File(oursOut)) === (await sha256File(qemuOut)) ? 'same bytes as qemu-img' : 'BYTES DIFFER';
    } else {
      // Our VMDK must read back as the input disk (qemu-img compare reads it with qemu's driver).
      const compare = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'vmdk', input, oursOut], { encoding: 'utf8' });
      result.check = `${compare.status === 0 ? 'reads back identical' : 'READ-BACK DIFFERS'}; ${(statSync(oursOut).size / MiB).toFixed(0)} MiB (qemu-img ${(statSync(qemuOut).size / MiB).toFixed(0)} MiB)`;
    }
    return result;
  } finally {
    rmSync(oursOut, { force: true });
    rmSync(qemuOut, { force: true });
  }
}

async function main(): Promise<void> {
  log(`bench:vmdk ${sizeMiB} MiB image in ${workDir}, ${repeat} runs each`);
  const raw = join(workDir, 'disk.raw');
  const vmdk = join(workDir, 'disk.vmdk');
  const keep = process.env.BENCH_DIR !== undefined;
  try {
    if (!existsSync(raw)) makeBenchImage(raw, sizeMiB, workDir);
    if (!existsSync(vmdk)) qemuImg(['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', raw, vmdk]);
    const rows: Row[] = [];
    if (only !== 'write') {
      log('  VMDK streamOptimized → raw...');
      rows.push(await row('VMDK streamOptimized → raw', vmdk, 'vmdk', 'raw', ['-O', 'raw']));
    }
    if (only !== 'read') {
      log('  raw → VMDK streamOptimized...');
      rows.push(await row('raw → VMDK streamOptimized', raw, 'raw', 'vmdk', ['-O', 'vmdk', '-o', 'subformat=streamOptimized']));
    }
    const version = execFileSync('qemu-img', ['--version'], { encoding: 'utf8' }).split('\n')[0].replace(/^qemu-img version /, '');
    process.stdout.write(`\nVMDK conversions of a ${sizeMiB} MiB disk, ${cpus().length} CPUs, qemu-img ${version}, median of ${repeat}\n\n`);
    const header = ['conversion', 'ours (s)', 'ours process (s)', 'qemu-img (s)', 'ours/qemu', 'process/qemu', 'peak RSS', 'check', 'runs ours | qemu'];
    const lines = rows.map((r) => [
      r.label,
      median(r.ours).toFixed(2),
      median(r.oursProcess).toFixed(2),
      median(r.qemu).toFixed(2),
      (median(r.ours) / median(r.qemu)).toFixed(2),
      (median(r.oursProcess) / median(r.qemu)).toFixed(2),
      `${(r.peakRss / MiB).toFixed(0)} MiB`,
      r.check,
      `${r.ours.map((s) => s.toFixed(2)).join(' ')} | ${r.qemu.map((s) => s.toFixed(2)).join(' ')}`,
    ]);
    const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => line[i].length)));
    const format = (cells: string[]): string => cells.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd();
    process.stdout.write(`${format(header)}\n${format(widths.map((w) => '-'.repeat(w)))}\n${lines.map(format).join('\n')}\n`);
    process.stdout.write(
      "\nours: the conversion timed inside its worker process; ours process: that process spawn to exit (Node's start and module\n" +
        'loading included); qemu-img: its whole process. Runs alternate. The machine may be shared: quote ratios, not seconds.\n',
    );
  } finally {
    if (!keep) rmSync(workDir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  process.stderr.write(`error: ${(error as Error).message}\n`);
  process.exit(1);
});
