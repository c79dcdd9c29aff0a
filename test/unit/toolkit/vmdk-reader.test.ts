import { readFileSync, rmSync } from 'fs';
import { join } from 'path';
import { makeRawDisk, qemuImg, qemuToRaw, tempDir, type MadeDisk } from '../../helpers/disk-corpus';
import { extentSummary, materialize } from '../../helpers/block-map-to-raw';
import { FileSource } from '../../../toolkit/io/file-source';
import { vmdkFormat, VmdkReader } from '../../../toolkit/formats/vmdk';
import { DEFAULT_MAX_VIRTUAL_SIZE } from '../../../toolkit/formats/format';

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
