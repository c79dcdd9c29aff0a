import { readFileSync, rmSync, writeFileSync } from 'fs';
import { join } from 'path';
import { makeRawDisk, qemuImg, qemuToRaw, tempDir, type MadeDisk } from '../../helpers/disk-corpus';
import { extentSummary, materialize } from '../../helpers/block-map-to-raw';
import { FileSource } from '../../../toolkit/io/file-source';
import { vmdkFormat, VmdkReader } from '../../../toolkit/formats/vmdk';
import { DEFAULT_MAX_VIRTUAL_SIZE } from '../../../toolkit/formats/format';
import { ImageFormatError } from '../../../toolkit/errors';
import type { RandomAccessSource } from '../../../toolkit/io/source';
import { HashingSink } from '../../../toolkit/io/hashing-sink';
import { DiscardSink } from '../../../toolkit/io/discard-sink';
import { convertImage } from '../../../toolkit/convert/convert-image';
import { createHash } from 'crypto';

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** Counts the reads (by either method) a reader makes of a local file. */
class CountingSource implements RandomAccessSource {
  reads = 0;
  constructor(private readonly inner: FileSource, private readonly withReadInto: boolean) {
    if (!withReadInto) (this as { readInto?: unknown }).readInto = undefined;
  }
  get size(): number { return this.inner.size; }
  get name(): string { return this.inner.name; }
  read(offset: number, length: number): Promise<Buffer> {
    this.reads++;
    return this.inner.read(offset, length);
  }
  async readInto(offset: number, target: Buffer): Promise<void> {
    this.reads++;
    (await this.inner.read(offset, target.length)).copy(target);
  }
  close(): Promise<void> { return this.inner.close(); }
}

const options = { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE };

async function readThroughUs(path: string) {
  const source = await FileSource.open(path);
  try {
    const head = await source.read(0, Math.min(4096, source.size));
    expect(await vmdkFormat.sniff(head, source)).toBe(true);
    const reader = await vmdkFormat.open(source, options);
    const bytes = await materialize(reader, source);
    const summary = await extentSummary(reader);
    await reader.close();
    return { info: reader.info, bytes, summary };
  } finally {
    await source.close();
  }
}

describe('VMDK reader against qemu-img', () => {
  let dir: string;
  let disks: MadeDisk[];

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  beforeAll(() => {
    dir = tempDir('vmdk-reader-');
    disks = [makeRawDisk(dir), makeRawDisk(dir, 'odd.raw', 35 * 1024 * 1024 + 1003)];
  });

  const variants: [string, string, string][] = [
    ['monolithicSparse', 'subformat=monolithicSparse', 'monolithicSparse'],
    ['monolithicSparse, compat6', 'subformat=monolithicSparse,compat6=on', 'monolithicSparse'],
    ['streamOptimized', 'subformat=streamOptimized', 'streamOptimized'],
    ['streamOptimized, lsilogic', 'subformat=streamOptimized,adapter_type=lsilogic', 'streamOptimized'],
    ['streamOptimized, compat6', 'subformat=streamOptimized,compat6=on', 'streamOptimized'],
    ['streamOptimized, lsilogic, hwversion 10', 'subformat=streamOptimized,adapter_type=lsilogic,hwversion=10', 'streamOptimized'],
  ];

  it('converts a streamOptimized VMDK reading each byte of the file at most once (no pass just for grain markers)', async () => {
    const vmdk = join(dir, 'read-once.vmdk');
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', disks[0].path, vmdk);
    const file = await FileSource.open(vmdk);
    const counted = new Uint8Array(file.size);
    const counting: RandomAccessSource = {
      size: file.size,
      name: file.name,
      read: (offset, length) => {
        for (let i = offset; i < offset + length; i++) counted[i]++;
        return file.read(offset, length);
      },
      close: () => file.close(),
    };
    try {
      const sink = new HashingSink(new DiscardSink());
      await convertImage({ source: counting, sink, output: 'raw' });
      expect(sink.digestHex()).toBe(sha256(qemuToRaw(vmdk, join(dir, 'read-once.raw'))));
      // The header, footer and tables are read a second time (open, then mapping); the grains are not.
      const readTwice = counted.reduce((n, times) => n + (times > 1 ? 1 : 0), 0);
      expect(readTwice).toBeLessThan(64 * 1024);
      expect(counted.reduce((n, times) => n + times, 0)).toBeLessThan(file.size * 1.02);
    } finally {
      await file.close();
    }
  });

  it('maps the same bytes when grain tables are re-read while mapping instead of cached', async () => {
    for (const subformat of ['monolithicSparse', 'streamOptimized']) {
      const vmdk = join(dir, `nocache-${subformat}.vmdk`);
      qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${subformat}`, disks[0].path, vmdk);
      const source = await FileSource.open(vmdk);
      try {
        const cached = await materialize(await VmdkReader.open(source, options), source);
        const reread = await materialize(await VmdkReader.open(source, { ...options, grainTableCacheBytes: 0 }), source);
        expect(reread.equals(cached)).toBe(true);
        expect(reread.equals(qemuToRaw(vmdk, `${vmdk}.raw`, 'vmdk'))).toBe(true);
      } finally {
        await source.close();
      }
    }
  });

  it('maps a streamOptimized VMDK without reading its grains (markers are checked when grains are read), with and without readInto', async () => {
    const vmdk = join(dir, 'windows.vmdk');
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', disks[0].path, vmdk);
    const expected = qemuToRaw(vmdk, `${vmdk}.raw`, 'vmdk');
    for (const withReadInto of [true, false]) {
      const source = new CountingSource(await FileSource.open(vmdk), withReadInto);
      try {
        const reader = await VmdkReader.open(source, options);
        const opened = source.reads;
        let grains = 0;
        for await (const extent of reader.blockMap()) if (extent.kind === 'compressed') grains++;
        expect(grains).toBeGreaterThan(50);
        // Mapping reads at most the grain tables (none here: open cached them), never a grain.
        const tables = Math.ceil(reader.info.virtualSize / (512 * 65536));
        expect(source.reads - opened).toBeLessThanOrEqual(tables);
        expect((await materialize(reader, source)).equals(expected)).toBe(true);
      } finally {
        await source.close();
      }
    }
  });

  it('refuses a damaged grain marker in the middle of the stream', async () => {
    const vmdk = join(dir, 'window-damage.vmdk');
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', disks[0].path, vmdk);
    const image = readFileSync(vmdk);
    // Find the grain markers by walking the file as a stream: marker, data, padding to a sector.
    const markers: number[] = [];
    for (let at = 128 * 512; at + 12 <= image.length && markers.length < 40; ) {
      const size = image.readUInt32LE(at + 8);
      if (size === 0) { at += 512 * (1 + Number(image.readBigUInt64LE(at))); continue; } // a metadata marker and its sectors
      markers.push(at);
      at += Math.ceil((12 + size) / 512) * 512;
    }
    expect(markers.length).toBe(40);
    for (const [field, check] of [[0, 'vmdk-grain-marker-lba'], [8, 'vmdk-grain-marker-size']] as const) {
      const damaged = Buffer.from(image);
      if (field === 0) damaged.writeBigUInt64LE(damaged.readBigUInt64LE(markers[30]) + 128n, markers[30]);
      else damaged.writeUInt32LE(0x7fffffff, markers[30] + 8);
      const path = join(dir, `window-damage-${field}.vmdk`);
      writeFileSync(path, damaged);
      for (const withReadInto of [true, false]) {
        const source = new CountingSource(await FileSource.open(path), withReadInto);
        try {
          const reader = await VmdkReader.open(source, options);
          const failure = await materialize(reader, source).then(() => undefined, (error: unknown) => error);
          expect(failure).toBeInstanceOf(ImageFormatError);
          expect((failure as ImageFormatError).check).toBe(check);
        } finally {
          await source.close();
        }
      }
    }
  });

  for (const diskIndex of [0, 1]) {
    for (const [label, qemuOptions, subformat] of variants) {
      it(`reads qemu-img ${label} of disk ${diskIndex} byte for byte`, async () => {
        const disk = disks[diskIndex];
        const vmdk = join(dir, `d${diskIndex}-${label.replace(/\W+/g, '_')}.vmdk`);
        qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', qemuOptions, disk.path, vmdk);
        const expected = qemuToRaw(vmdk, `${vmdk}.raw`, 'vmdk');
        const ours = await readThroughUs(vmdk);
        expect(ours.info.subformat).toBe(subformat);
        expect(ours.info.details?.adapterType).toBe(qemuOptions.includes('lsilogic') ? 'lsilogic' : 'ide');
        if (qemuOptions.includes('hwversion=10')) expect(ours.info.details?.virtualHWVersion).toBe('10');
        if (qemuOptions.includes('compat6')) expect(ours.info.details?.virtualHWVersion).toBe('6');
        expect(ours.info.virtualSize).toBe(Math.ceil(disk.size / 512) * 512);
        expect(ours.bytes.length).toBe(expected.length);
        expect(ours.bytes.equals(expected)).toBe(true);
        // The input has large zero regions; they must come out as zero extents, not data.
        expect(ours.summary.zero).toBeGreaterThan(4 * 1024 * 1024);
        expect(ours.info.allocatedSize).toBe(ours.info.virtualSize - ours.summary.zero);
        // And the raw input itself, rounded up to a sector, is what we read.
        const raw = readFileSync(disk.path);
        expect(ours.bytes.subarray(0, raw.length).equals(raw)).toBe(true);
      });
    }
  }
});
