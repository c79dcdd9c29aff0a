import { readFileSync, rmSync, writeFileSync } from 'fs';
import { join } from 'path';
import { makeRawDisk, qemuImg, qemuToRaw, seededBytes, tempDir, type MadeDisk } from '../../helpers/disk-corpus';
import { materialize } from '../../helpers/block-map-to-raw';
import { rawChunks } from '../../helpers/raw-chunks';
import { FileSource } from '../../../toolkit/io/file-source';
import { FileSink } from '../../../toolkit/io/file-sink';
import { StreamOptimizedVmdkWriter, vmdkFormat, vmdkStreamOptimizedWriter } from '../../../toolkit/formats/vmdk';
import { DEFAULT_MAX_VIRTUAL_SIZE } from '../../../toolkit/formats/format';

function roundedRaw(path: string): Buffer {
  const raw = readFileSync(path);
  const out = Buffer.alloc(Math.ceil(raw.length / 512) * 512);
  raw.copy(out);
  return out;
}

describe('streamOptimized VMDK writer', () => {
  let dir: string;
  let disks: MadeDisk[];

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  beforeAll(() => {
    dir = tempDir('vmdk-writer-');
    disks = [makeRawDisk(dir), makeRawDisk(dir, 'odd.raw', 35 * 1024 * 1024 + 1003)];
  });

  for (const diskIndex of [0, 1]) {
    it(`writes disk ${diskIndex} so that qemu-img checks it and reads back the input`, async () => {
      const disk = disks[diskIndex];
      const vmdk = join(dir, `ours-${diskIndex}.vmdk`);
      const sink = await FileSink.create(vmdk);
      await vmdkStreamOptimizedWriter.write(rawChunks(disk.path), sink);
      const { size } = await sink.finish();
      expect(size).toBe(readFileSync(vmdk).length);

      const info = JSON.parse(qemuImg('info', '--output=json', vmdk));
      expect(info.format).toBe('vmdk');
      expect(info['format-specific'].data['create-type']).toBe('streamOptimized');
      expect(info['virtual-size']).toBe(Math.ceil(disk.size / 512) * 512);
      qemuImg('check', vmdk); // throws on a non-zero exit

      const expected = roundedRaw(disk.path);
      expect(qemuToRaw(vmdk, `${vmdk}.raw`, 'vmdk').equals(expected)).toBe(true);
      // Zero grains were skipped: the file is much smaller than the disk.
      expect(size).toBeLessThan(disk.size / 2);

      // Our reader takes our writer's output (grain directory at the end: the footer path).
      const source = await FileSource.open(vmdk);
      try {
        const reader = await vmdkFormat.open(source, { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE });
        expect(reader.info.subformat).toBe('streamOptimized');
        expect(reader.info.details?.grainDirectoryAtEnd).toBe(true);
        expect((await materialize(reader, source)).equals(expected)).toBe(true);
      } finally {
        await source.close();
      }
    });
  }

  it('writes the descriptor VMware expects: lsilogic, SCSI geometry, one SPARSE extent naming itself', async () => {
    const vmdk = join(dir, 'descriptor.vmdk');
    const sink = await FileSink.create(vmdk);
    await vmdkStreamOptimizedWriter.write(rawChunks(disks[1].path), sink);
    await sink.finish();
    const file = readFileSync(vmdk);
    expect(file.readUInt32LE(4)).toBe(3); // version
    expect(file.readUInt32LE(8)).toBe(0x30001); // newline test, compressed, markers
    expect(file.readBigUInt64LE(56)).toBe(0xffffffffffffffffn); // grain directory at the end
    const descriptor = file.subarray(512, 512 * 21).toString('utf8').replace(/\0+$/, '');
    expect(descriptor).toContain('createType="streamOptimized"');
    expect(descriptor).toContain('ddb.adapterType = "lsilogic"');
    expect(descriptor).toContain('ddb.geometry.heads = "255"');
    expect(descriptor).toMatch(/^RW \d+ SPARSE "descriptor\.vmdk"$/m);
    // Footer: marker, header copy with the real grain directory, end-of-stream marker.
    const tail = file.subarray(file.length - 1536);
    expect(tail.readUInt32LE(12)).toBe(3);
    expect(tail.readUInt32LE(512)).toBe(0x564d444b);
    expect(Number(tail.readBigUInt64LE(512 + 56))).toBeLessThan(file.length / 512);
    expect(tail.subarray(1024).every((b) => b === 0)).toBe(true);
  });

  it('writes an all-zero disk as header, descriptor, empty directory and footer only', async () => {
    const vmdk = join(dir, 'empty.vmdk');
    const sink = await FileSink.create(vmdk);
    async function* chunks() { yield { offset: 0, zeroLength: 3 * 1024 ** 3 }; }
    await vmdkStreamOptimizedWriter.write({ virtualSize: 3 * 1024 ** 3, chunks: chunks() }, sink);
    const { size } = await sink.finish();
    expect(size).toBeLessThan(128 * 1024);
    qemuImg('check', vmdk);
    const map = JSON.parse(qemuImg('map', '--output=json', vmdk));
    expect(map.every((entry: { data: boolean }) => !entry.data)).toBe(true);
  });

  it('stores random grains and deflates the rest, with the same result as deflating everything, read back by qemu-img', async () => {
    // Random grains, text grains, random grains repeating every 4 KiB (compressible at long range),
    // and grains that are half random, half zeros; chunks cut across grain boundaries.
    const grain = 64 * 1024;
    const text = Buffer.from('streamOptimized grains of plain text compress well. '.repeat(2000));
    const repeated = Buffer.concat(Array.from({ length: 16 }, () => seededBytes(4096, 5)));
    const half = Buffer.concat([seededBytes(grain / 2, 6), Buffer.alloc(grain / 2)]);
    const disk = Buffer.concat([seededBytes(8 * grain, 3), text.subarray(0, 4 * grain), repeated, repeated, half, seededBytes(3 * grain + 777, 4)]);
    const raw = join(dir, 'mixed.raw');
    writeFileSync(raw, disk);
    const sizes: number[] = [];
    for (const storeIncompressible of [true, false]) {
      const vmdk = join(dir, `mixed-${storeIncompressible}.vmdk`);
      const sink = await FileSink.create(vmdk);
      async function* chunks() {
        for (let at = 0; at < disk.length; at += 100_000) yield { offset: at, data: disk.subarray(at, Math.min(disk.length, at + 100_000)) };
      }
      await new StreamOptimizedVmdkWriter({ storeIncompressible }).write({ virtualSize: disk.length, chunks: chunks() }, sink);
      sizes.push((await sink.finish()).size);
      qemuImg('check', vmdk);
      expect(qemuToRaw(vmdk, `${vmdk}.raw`, 'vmdk').equals(roundedRaw(raw))).toBe(true);
    }
    // Storing instead of deflating random grains costs at most a few sectors per grain.
    expect(sizes[0]).toBeLessThanOrEqual(sizes[1] + 12 * 1024);
    // The long-range repeats were still deflated (else the file would hold them whole).
    expect(sizes[0]).toBeLessThan(disk.length - 2 * grain);
  });
});
