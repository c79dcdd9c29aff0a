/**
 * The engine with every format module: images made by qemu-img, converted by convertImage,
 * compared byte for byte with qemu-img's own conversion; and our writers' output read back by
 * qemu-img.
 */
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'fs';
import { join } from 'path';
import { randomBytes } from 'crypto';
import { convertImage, outputSizeBound } from '../../../toolkit/convert/convert-image';
import type { DiskImageWriter } from '../../../toolkit/formats/format';
import { openImage } from '../../../toolkit/formats/registry';
import { FileSink } from '../../../toolkit/io/file-sink';
import { FileSource } from '../../../toolkit/io/file-source';
import { makeRawDisk, qemuImg, qemuToRaw, tempDir, type MadeDisk } from '../../helpers/disk-corpus';

let dir: string;
let disk: MadeDisk;
let diskBytes: Buffer;

beforeAll(() => {
  dir = tempDir();
  disk = makeRawDisk(dir);
  diskBytes = readFileSync(disk.path);
});

async function convertFile(input: string, output: string, writer: DiskImageWriter['name'] = 'raw', readConcurrency?: number) {
  const source = await FileSource.open(input);
  try {
    return await convertImage({ source, sink: await FileSink.create(output), output: writer, readConcurrency });
  } finally {
    await source.close();
  }
}

describe('conversion to raw matches qemu-img', () => {
  const cases: [string, string, string[]][] = [
    ['VMDK streamOptimized', 'vmdk', ['-o', 'subformat=streamOptimized']],
    ['VMDK monolithicSparse', 'vmdk', []],
    ['QCOW2', 'qcow2', []],
    ['QCOW2 compressed', 'qcow2', ['-c']],
    ['VHD dynamic', 'vpc', []],
    ['VHD fixed', 'vpc', ['-o', 'subformat=fixed']],
    ['VHDX', 'vhdx', []],
  ];
  it.each(cases)('%s', async (label, qemuFormat, options) => {
    const image = join(dir, `${label.replace(/\W+/g, '-')}.img`);
    qemuImg('convert', '-f', 'raw', '-O', qemuFormat, ...options, disk.path, image);
    const expected = qemuToRaw(image, `${image}.qemu.raw`, qemuFormat);
    const out = `${image}.ours.raw`;
    const result = await convertFile(image, out, 'raw', 3);
    expect(result.info.virtualSize).toBe(expected.length);
    expect(statSync(out).size).toBe(expected.length);
    expect(readFileSync(out).equals(expected)).toBe(true);
  });
});

describe('our writers, read back by qemu-img', () => {
  const cases: [DiskImageWriter['name'], string][] = [
    ['vmdk', 'vmdk'],
    ['vhd', 'vpc'],
    ['vhd-fixed', 'vpc'],
  ];
  it.each(cases)('raw → %s', async (writer, qemuFormat) => {
    const out = join(dir, `written.${writer}`);
    await convertFile(disk.path, out, writer);
    if (qemuFormat === 'vmdk') qemuImg('check', '-f', qemuFormat, out); // qemu-img check has no VHD support
    const back = qemuToRaw(out, `${out}.raw`, qemuFormat);
    // Formats round the virtual size up (sectors, CHS geometry); the disk itself must be intact.
    expect(back.length).toBeGreaterThanOrEqual(disk.size);
    expect(back.subarray(0, disk.size).equals(diskBytes)).toBe(true);
    expect(back.subarray(disk.size).every((byte) => byte === 0)).toBe(true);
  });
});

describe('the output size bound (sizes S3 parts before the output exists)', () => {
  it('holds for incompressible data in every writer, its fixed part aside', async () => {
    const random = join(dir, 'random.raw');
    const size = 64 * 1024 * 1024 + 4321;
    writeFileSync(random, randomBytes(size));
    const fixedPart = outputSizeBound(0);
    for (const writer of ['raw', 'vmdk', 'vhd', 'vhd-fixed', 'ova'] as const) {
      const out = join(dir, `random-out.${writer}`);
      await convertFile(random, out, writer);
      const written = statSync(out).size;
      expect({ writer, fits: written <= outputSizeBound(size) - fixedPart + 1024 * 1024 }).toEqual({ writer, fits: true });
    }
  });
});

describe('OVA round trip', () => {
  it('raw → OVA (our writer) → raw is the original disk', async () => {
    const ova = join(dir, 'written.ova');
    await convertFile(disk.path, ova, 'ova');
    const back = join(dir, 'ova-back.raw');
    const result = await convertFile(ova, back, 'raw');
    expect(result.info.format).toBe('ova');
    const bytes = readFileSync(back);
    expect(bytes.length).toBeGreaterThanOrEqual(disk.size);
    expect(bytes.subarray(0, disk.size).equals(diskBytes)).toBe(true);
    expect(bytes.subarray(disk.size).every((byte) => byte === 0)).toBe(true);
  });
});

describe('hostile layering', () => {
  it('refuses an image that is both QCOW2 (header) and VHD (footer)', async () => {
    const qcow2 = join(dir, 'two-faced.qcow2');
    const vhd = join(dir, 'fixed.vhd');
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', disk.path, qcow2);
    qemuImg('convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=fixed', disk.path, vhd);
    const vhdBytes = readFileSync(vhd);
    appendFileSync(qcow2, vhdBytes.subarray(vhdBytes.length - 512));
    const source = await FileSource.open(qcow2);
    try {
      await expect(openImage(source)).rejects.toMatchObject({ check: 'format-ambiguous' });
      await expect(openImage(source)).rejects.toThrow(/QCOW2 and VHD/);
    } finally {
      await source.close();
    }
  });
});
