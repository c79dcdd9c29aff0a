import { execFileSync } from 'child_process';
import { readFileSync, writeFileSync, rmSync } from 'fs';
import { join } from 'path';
import { createHash } from 'crypto';
import { XMLValidator } from 'fast-xml-parser';
import { makeRawDisk, qemuImg, qemuToRaw, seededBytes, tempDir, type MadeDisk } from '../../helpers/disk-corpus';
import { materialize } from '../../helpers/block-map-to-raw';
import { rawChunks } from '../../helpers/raw-chunks';
import { BufferSource, MemorySink } from '../../helpers/memory-io';
import { FileSource } from '../../../toolkit/io/file-source';
import { FileSink } from '../../../toolkit/io/file-sink';
import { ovaFormat, ovaWriter, parseOvf } from '../../../toolkit/formats/ova';
import { OvaWriter } from '../../../toolkit/formats/ova/ova-writer';
import { HashingSink } from '../../../toolkit/io/hashing-sink';
import { S3MultipartSink } from '../../../toolkit/io/s3-multipart-sink';
import { CreateBucketCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { startS3Server } from '../../helpers/s3-server';
import { vmdkFormat } from '../../../toolkit/formats/vmdk';
import { TarWriter } from '../../../toolkit/bundle/tar';
import { DEFAULT_MAX_VIRTUAL_SIZE } from '../../../toolkit/formats/format';
import { ImageFormatError } from '../../../toolkit/errors';

const options = { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE };

function rounded(path: string): Buffer {
  const raw = readFileSync(path);
  const out = Buffer.alloc(Math.ceil(raw.length / 512) * 512);
  raw.copy(out);
  return out;
}

function ovfFor(files: { href: string; size: number; capacity: number }[]): string {
  const refs = files.map((f, i) => `<File ovf:href="${f.href}" ovf:id="file${i}" ovf:size="${f.size}"/>`).join('\n    ');
  const disks = files
    .map((f, i) => `<Disk ovf:capacity="${f.capacity}" ovf:diskId="vmdisk${i}" ovf:fileRef="file${i}" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>`)
    .join('\n    ');
  return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
    ${refs}
  </References>
  <DiskSection>
    <Info>disks</Info>
    ${disks}
  </DiskSection>
  <VirtualSystem ovf:id="test-vm"><Info>vm</Info><Name>test-vm</Name></VirtualSystem>
</Envelope>`;
}

async function buildOva(ovf: string, members: [string, Buffer][]): Promise<Buffer> {
  const sink = new MemorySink();
  const tar = new TarWriter(sink);
  await tar.addBuffer('vm.ovf', Buffer.from(ovf));
  for (const [name, data] of members) await tar.addBuffer(name, data);
  await tar.finish();
  return sink.bytes();
}

async function refusal(promise: Promise<unknown>): Promise<ImageFormatError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ImageFormatError);
    return error as ImageFormatError;
  }
  throw new Error('expected a refusal');
}

describe('OVA', () => {
  let dir: string;
  let disks: MadeDisk[];
  let smallVmdk: Buffer;

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  beforeAll(() => {
    dir = tempDir('ova-');
    disks = [makeRawDisk(dir), makeRawDisk(dir, 'odd.raw', 35 * 1024 * 1024 + 1003)];
    writeFileSync(join(dir, 'small.raw'), seededBytes(1024 * 1024, 9));
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', join(dir, 'small.raw'), join(dir, 'small.vmdk'));
    smallVmdk = readFileSync(join(dir, 'small.vmdk'));
  });

  /** Everything an importer checks of an OVA we wrote from `disk`, file at `ova`. */
  async function expectGoodOva(ova: string, disk: MadeDisk, base: string): Promise<void> {
    const names = execFileSync('tar', ['tf', ova], { encoding: 'utf8' }).trim().split('\n');
    expect(names).toEqual([`${base}.ovf`, `${base}-disk1.vmdk`]);
    const out = join(dir, `extracted-${base}`);
    execFileSync('mkdir', ['-p', out]);
    execFileSync('tar', ['xf', ova, '-C', out]);
    const ovfText = readFileSync(join(out, `${base}.ovf`), 'utf8');
    expect(XMLValidator.validate(ovfText)).toBe(true);
    const ovf = parseOvf(ovfText);
    const vmdkPath = join(out, `${base}-disk1.vmdk`);
    expect(ovf.disks).toHaveLength(1);
    expect(ovf.disks[0].file.href).toBe(`${base}-disk1.vmdk`);
    expect(ovf.disks[0].file.size).toBe(readFileSync(vmdkPath).length);
    expect(ovf.disks[0].capacityBytes).toBe(Math.ceil(disk.size / 512) * 512);
    expect(ovfText).toContain(`<VirtualSystem ovf:id="${base}">`);
    qemuImg('check', vmdkPath);
    expect(qemuToRaw(vmdkPath, join(dir, `extracted-${base}.raw`), 'vmdk').equals(rounded(disk.path))).toBe(true);

    // And our own reader takes the OVA whole, reading the disk in place.
    const source = await FileSource.open(ova);
    try {
      const head = await source.read(0, 4096);
      expect(await ovaFormat.sniff(head, source)).toBe(true);
      expect(await vmdkFormat.sniff(head, source)).toBe(false);
      const reader = await ovaFormat.open(source, options);
      expect(reader.info.format).toBe('ova');
      expect(reader.info.subformat).toBe('streamOptimized');
      expect(reader.info.details?.diskCount).toBe(1);
      expect((await materialize(reader, source)).equals(rounded(disk.path))).toBe(true);
      await reader.close();
    } finally {
      await source.close();
    }
  }

  it('writes an OVA in one pass into a file: tar lists it, its OVF is valid, qemu-img reads its VMDK back as the input', async () => {
    const disk = disks[1];
    const ova = join(dir, 'export-1.ova');
    const sink = await FileSink.create(ova);
    // A scratch directory that does not exist: the one-pass writer must not need one.
    await new OvaWriter({ scratchDir: join(dir, 'no-such-dir') }).write(rawChunks(disk.path), sink);
    await sink.finish();
    await expectGoodOva(ova, disk, 'export-1');
  });

  it('writes an OVA in one pass into S3 (the head held back in the first part)', async () => {
    const server = await startS3Server();
    try {
      await server.s3.send(new CreateBucketCommand({ Bucket: 'exports' }));
      const disk = disks[0];
      const sink = new S3MultipartSink(server.s3, 'exports', 'vm/export-2.ova', { partSize: 5 * 1024 * 1024, queueSize: 2 });
      await new OvaWriter({ scratchDir: join(dir, 'no-such-dir') }).write(rawChunks(disk.path), sink);
      await sink.finish();
      const object = await server.s3.send(new GetObjectCommand({ Bucket: 'exports', Key: 'vm/export-2.ova' }));
      const ova = join(dir, 'export-2.ova');
      writeFileSync(ova, Buffer.from(await object.Body!.transformToByteArray()));
      await expectGoodOva(ova, disk, 'export-2');
    } finally {
      await server.stop();
    }
  });

  it('writes an OVA through a scratch VMDK into a sink that cannot patch (a hashing sink)', async () => {
    const disk = disks[1];
    const ova = join(dir, 'export-3.ova');
    const file = await FileSink.create(ova);
    const sink = new HashingSink(file);
    await ovaWriter.write(rawChunks(disk.path), sink);
    await sink.finish();
    await expectGoodOva(ova, disk, 'export-3');
    expect(sink.digestHex()).toBe(createHash('sha256').update(readFileSync(ova)).digest('hex'));
  });

  it('reads an OVA of two qemu-img VMDKs packed by GNU tar, either disk, in DiskSection order', async () => {
    const files = disks.map((disk, i) => {
      const vmdk = join(dir, `two-${i}.vmdk`);
      qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized,adapter_type=lsilogic', disk.path, vmdk);
      return { href: `two-${i}.vmdk`, size: readFileSync(vmdk).length, capacity: Math.ceil(disk.size / 512) * 512 };
    });
    writeFileSync(join(dir, 'two.ovf'), ovfFor([files[1], files[0]])); // the odd disk first
    const ova = join(dir, 'two.ova');
    execFileSync('tar', ['cf', ova, '--format=ustar', '-C', dir, 'two.ovf', 'two-0.vmdk', 'two-1.vmdk']);
    const source = await FileSource.open(ova);
    try {
      const first = await ovaFormat.open(source, options);
      expect(first.info.details?.diskCount).toBe(2);
      expect(String(first.info.details?.disk0)).toContain('two-1.vmdk');
      expect(String(first.info.details?.disk1)).toContain('two-0.vmdk');
      expect((await materialize(first, source)).equals(qemuToRaw(join(dir, 'two-1.vmdk'), join(dir, 'two-1.raw'), 'vmdk'))).toBe(true);
      const second = await ovaFormat.open(source, { ...options, diskIndex: 1 } as typeof options);
      expect((await materialize(second, source)).equals(qemuToRaw(join(dir, 'two-0.vmdk'), join(dir, 'two-0.raw'), 'vmdk'))).toBe(true);
      expect(await refusal(ovaFormat.open(source, { ...options, diskIndex: 2 } as typeof options))).toMatchObject({ check: 'ova-disk-index' });
    } finally {
      await source.close();
    }
  });

  describe('refuses hostile packages', () => {
    const cases: [string, string, string][] = [
      ['an href with a directory', '../../etc/passwd', 'ova-href'],
      ['an absolute href', '/etc/passwd', 'ova-href'],
      ['a parent-directory href', '..', 'ova-href'],
      ['a URL href', 'http://169.254.169.254/latest/meta-data', 'ova-href'],
      ['a file not in the package', 'missing.vmdk', 'ova-missing-file'],
    ];
    for (const [label, href, check] of cases) {
      it(`refuses ${label}`, async () => {
        const ova = await buildOva(ovfFor([{ href, size: smallVmdk.length, capacity: 1024 * 1024 }]), [['small.vmdk', smallVmdk]]);
        const error = await refusal(ovaFormat.open(new BufferSource(ova, 'hostile.ova'), options));
        expect(error.check).toBe(check);
      });
    }

    it('refuses an OVF with a DOCTYPE (entity expansion)', async () => {
      const ovf = ovfFor([{ href: 'small.vmdk', size: smallVmdk.length, capacity: 1024 * 1024 }]).replace(
        '<Envelope',
        '<!DOCTYPE lol [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>\n<Envelope',
      );
      const ova = await buildOva(ovf, [['small.vmdk', smallVmdk]]);
      expect((await refusal(ovaFormat.open(new BufferSource(ova), options))).check).toBe('ova-ovf-doctype');
    });

    it('refuses a disk that is not a VMDK', async () => {
      const raw = seededBytes(65536, 1);
      const ova = await buildOva(ovfFor([{ href: 'disk.vmdk', size: raw.length, capacity: raw.length }]), [['disk.vmdk', raw]]);
      expect((await refusal(ovaFormat.open(new BufferSource(ova), options))).check).toBe('ova-disk-format');
    });

    it('refuses a file whose size disagrees with the OVF', async () => {
      const ova = await buildOva(ovfFor([{ href: 'small.vmdk', size: smallVmdk.length + 1, capacity: 1024 * 1024 }]), [['small.vmdk', smallVmdk]]);
      expect((await refusal(ovaFormat.open(new BufferSource(ova), options))).check).toBe('ova-file-size');
    });

    it('passes refusals of the inner VMDK through', async () => {
      const flat = Buffer.from('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "small-flat.vmdk" 0\n');
      const ova = await buildOva(ovfFor([{ href: 'small.vmdk', size: flat.length, capacity: 1024 * 1024 }]), [['small.vmdk', flat]]);
      expect((await refusal(ovaFormat.open(new BufferSource(ova), options))).check).toBe('vmdk-create-type');
    });

    it('checks the descriptor digest in a manifest', async () => {
      const ovf = ovfFor([{ href: 'small.vmdk', size: smallVmdk.length, capacity: 1024 * 1024 }]);
      const digest = createHash('sha256').update(ovf).digest('hex');
      const good = await buildOva(ovf, [['small.vmdk', smallVmdk], ['vm.mf', Buffer.from(`SHA256(vm.ovf)= ${digest}\n`)]]);
      const reader = await ovaFormat.open(new BufferSource(good), options);
      expect(reader.info.details?.manifest).toBe('descriptor digest verified');
      const altered = await buildOva(ovf, [['small.vmdk', smallVmdk], ['vm.mf', Buffer.from(`SHA256(vm.ovf)= ${'0'.repeat(64)}\n`)]]);
      expect((await refusal(ovaFormat.open(new BufferSource(altered), options))).check).toBe('ova-manifest-digest');
      const garbled = await buildOva(ovf, [['small.vmdk', smallVmdk], ['vm.mf', Buffer.from('MD5 vm.ovf 1234\n')]]);
      expect((await refusal(ovaFormat.open(new BufferSource(garbled), options))).check).toBe('ova-manifest');
    });

    it('accepts the same package with a good href (the cases above differ only in what they test)', async () => {
      const ova = await buildOva(ovfFor([{ href: 'small.vmdk', size: smallVmdk.length, capacity: 1024 * 1024 }]), [['small.vmdk', smallVmdk]]);
      const source = new BufferSource(ova);
      const reader = await ovaFormat.open(source, options);
      expect((await materialize(reader, source)).equals(readFileSync(join(dir, 'small.raw')))).toBe(true);
    });
  });
});
