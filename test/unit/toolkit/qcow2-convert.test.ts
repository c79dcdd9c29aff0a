/**
 * qcow2 through the whole toolkit path a real import takes: sniffed by the registry, opened,
 * converted to raw by the convert engine. Kept apart from the reader tests so a problem in the
 * engine or another format's module cannot hide a reader result (and vice versa).
 */
import { execFileSync } from 'child_process';
import { readFileSync, rmSync } from 'fs';
import { join } from 'path';
import { makeRawDisk, qemuImg, qemuToRaw, tempDir, type MadeDisk } from '../../helpers/disk-corpus';
import { FileSource } from '../../../toolkit/io/file-source';
import { FileSink } from '../../../toolkit/io/file-sink';
import { convertImage } from '../../../toolkit/convert/convert-image';

const MiB = 1024 * 1024;
let dir: string;
let disk: MadeDisk;

beforeAll(() => {
  dir = tempDir('qcow2-convert-');
  disk = makeRawDisk(dir);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function convertWithToolkit(input: string, output: string): Promise<Buffer> {
  const source = await FileSource.open(input);
  try {
    const result = await convertImage({ source, sink: await FileSink.create(output), output: 'raw', claimedFormat: 'qcow2' });
    expect(result.info.format).toBe('qcow2');
  } finally {
    await source.close();
  }
  return readFileSync(output);
}

describe('qcow2 → raw through convertImage equals qemu-img convert -O raw', () => {
  test.each([
    ['compressed, 64k clusters', ['-c']],
    ['compat=0.10', ['-o', 'compat=0.10']],
    ['extended_l2, 2M clusters, compressed', ['-c', '-o', 'extended_l2=on,cluster_size=2M']],
    ['512-byte clusters', ['-o', 'cluster_size=512']],
  ])('%s', async (name, args) => {
    const path = join(dir, `${name.replace(/[^a-z0-9]+/gi, '_')}.qcow2`);
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', ...args, disk.path, path);
    const expected = qemuToRaw(path, `${path}.qemu.raw`, 'qcow2');
    const ours = await convertWithToolkit(path, `${path}.ours.raw`);
    expect(ours.length).toBe(expected.length);
    expect(ours.equals(expected)).toBe(true);
  });

  test('zero-flagged and partly written clusters (qemu-io)', async () => {
    const path = join(dir, 'written.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'preallocation=metadata', path, String(12 * MiB + 512));
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 4096 70000', '-c', `write -z ${MiB} ${2 * MiB}`, path], { stdio: 'pipe' });
    const expected = qemuToRaw(path, `${path}.qemu.raw`, 'qcow2');
    const ours = await convertWithToolkit(path, `${path}.ours.raw`);
    expect(ours.equals(expected)).toBe(true);
  });
});
