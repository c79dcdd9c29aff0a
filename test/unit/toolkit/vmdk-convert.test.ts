/** VMDK and OVA through the real convert engine (sniffing, block map, parallel reads, writers). */
import { readFileSync, writeFileSync, rmSync } from 'fs';
import { join } from 'path';
import { makeRawDisk, qemuImg, qemuToRaw, tempDir, type MadeDisk } from '../../helpers/disk-corpus';
import { FileSource } from '../../../toolkit/io/file-source';
import { FileSink } from '../../../toolkit/io/file-sink';
import { convertImage } from '../../../toolkit/convert/convert-image';

async function convert(input: string, output: string, format: 'raw' | 'vmdk' | 'ova', claimedFormat?: 'vmdk' | 'ova' | 'raw') {
  const source = await FileSource.open(input);
  try {
    return await convertImage({ source, sink: await FileSink.create(output), output: format, claimedFormat });
  } finally {
    await source.close();
  }
}

function rounded(path: string): Buffer {
  const raw = readFileSync(path);
  const out = Buffer.alloc(Math.ceil(raw.length / 512) * 512);
  raw.copy(out);
  return out;
}

describe('VMDK and OVA through convertImage', () => {
  let dir: string;
  let disks: MadeDisk[];

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  beforeAll(() => {
    dir = tempDir('vmdk-convert-');
    disks = [makeRawDisk(dir), makeRawDisk(dir, 'odd.raw', 35 * 1024 * 1024 + 1003)];
  });

  for (const subformat of ['monolithicSparse', 'streamOptimized']) {
    it(`converts a qemu-img ${subformat} VMDK to raw exactly as qemu-img does`, async () => {
      for (const [i, disk] of disks.entries()) {
        const vmdk = join(dir, `${subformat}-${i}.vmdk`);
        qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${subformat}`, disk.path, vmdk);
        const result = await convert(vmdk, `${vmdk}.ours.raw`, 'raw', 'vmdk');
        expect(result.info.subformat).toBe(subformat);
        expect(readFileSync(`${vmdk}.ours.raw`).equals(qemuToRaw(vmdk, `${vmdk}.qemu.raw`, 'vmdk'))).toBe(true);
      }
    });
  }

  it('converts raw to streamOptimized VMDK and back, qemu-img agreeing on the middle file', async () => {
    const disk = disks[1];
    const vmdk = join(dir, 'roundtrip.vmdk');
    await convert(disk.path, vmdk, 'vmdk', 'raw');
    qemuImg('check', vmdk);
    expect(qemuToRaw(vmdk, join(dir, 'roundtrip.qemu.raw'), 'vmdk').equals(rounded(disk.path))).toBe(true);
    await convert(vmdk, join(dir, 'roundtrip.ours.raw'), 'raw', 'vmdk');
    expect(readFileSync(join(dir, 'roundtrip.ours.raw')).equals(rounded(disk.path))).toBe(true);
  });

  it('converts raw to OVA and the OVA back to raw', async () => {
    const disk = disks[0];
    const ova = join(dir, 'vm.ova');
    await convert(disk.path, ova, 'ova', 'raw');
    const result = await convert(ova, join(dir, 'vm.ours.raw'), 'raw', 'ova');
    expect(result.info.format).toBe('ova');
    expect(readFileSync(join(dir, 'vm.ours.raw')).equals(rounded(disk.path))).toBe(true);
  });

  it('refuses a VMDK claimed as something else, and a descriptor file claimed as VMDK', async () => {
    const vmdk = join(dir, 'streamOptimized-1.vmdk');
    await expect(convert(vmdk, join(dir, 'x.raw'), 'raw', 'raw')).rejects.toMatchObject({ check: 'format-mismatch' });
    const flat = join(dir, 'flat.vmdk');
    writeFileSync(flat, '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/passwd" 0\n');
    await expect(convert(flat, join(dir, 'y.raw'), 'raw', 'vmdk')).rejects.toMatchObject({ check: 'vmdk-create-type' });
  });
});
