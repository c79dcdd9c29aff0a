/**
 * Hostile VMDKs: each is a valid image with one thing broken, and each must be refused by its
 * own named check, quickly, reading only the source it was given.
 */
import * as fs from 'fs';
import { join } from 'path';
import { qemuImg, seededBytes, tempDir } from '../../helpers/disk-corpus';
import { materialize } from '../../helpers/block-map-to-raw';
import { BufferSource, MemorySink } from '../../helpers/memory-io';
import { vmdkFormat, vmdkStreamOptimizedWriter } from '../../../toolkit/formats/vmdk';
import { DEFAULT_MAX_VIRTUAL_SIZE, type VirtualChunk } from '../../../toolkit/formats/format';
import { ImageFormatError } from '../../../toolkit/errors';

const options = { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE };
const SECTOR = 512;

/** 2 MiB + 1000 bytes: data, a zero gap, data. */
function content(): Buffer {
  const raw = Buffer.alloc(2 * 1024 * 1024 + 1000);
  seededBytes(300_000, 21).copy(raw, 0);
  seededBytes(200_000, 22).copy(raw, 1_500_000);
  return raw;
}

interface Outcome { check: string; message: string; reads: number; ms: number }

/** Opens (and maps) a mutated image; returns the refusal. */
async function refuse(image: Buffer, maxVirtualSize = options.maxVirtualSize): Promise<Outcome> {
  const source = new BufferSource(image, 'hostile.vmdk');
  const started = Date.now();
  try {
    const head = image.subarray(0, 4096);
    expect(await vmdkFormat.sniff(head, source)).toBe(true);
    const reader = await vmdkFormat.open(source, { maxVirtualSize });
    await materialize(reader, source);
  } catch (error) {
    if (!(error instanceof ImageFormatError)) throw error;
    return { check: error.check, message: error.message, reads: source.reads, ms: Date.now() - started };
  }
  throw new Error('expected the image to be refused');
}

function descriptorText(image: Buffer): string {
  const region = image.subarray(SECTOR, SECTOR * 21);
  return region.toString('utf8', 0, region.indexOf(0));
}

/** Rewrites the embedded descriptor (offset 1, 20 sectors in both qemu's and our layout). */
function withDescriptor(image: Buffer, edit: (text: string) => string): Buffer {
  const out = Buffer.from(image);
  const text = Buffer.from(edit(descriptorText(image)));
  if (text.length > 20 * SECTOR) throw new Error('test descriptor too long');
  out.fill(0, SECTOR, SECTOR * 21);
  text.copy(out, SECTOR);
  return out;
}

function patch(image: Buffer, write: (b: Buffer) => void): Buffer {
  const out = Buffer.from(image);
  write(out);
  return out;
}

describe('hostile VMDKs', () => {
  let sparse: Buffer; // qemu-img monolithicSparse: grain directory in the header area
  let stream: Buffer; // our streamOptimized: grain directory at the end, footer
  let twoTables: Buffer; // qemu-img monolithicSparse of 40 MiB: two grain tables
  let openSpy: jest.SpyInstance;
  let scratch: string;

  afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

  beforeAll(async () => {
    const dir = tempDir('vmdk-hostile-');
    scratch = dir;
    const raw = content();
    fs.writeFileSync(join(dir, 'c.raw'), raw);
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicSparse', join(dir, 'c.raw'), join(dir, 'c.vmdk'));
    sparse = fs.readFileSync(join(dir, 'c.vmdk'));
    fs.writeFileSync(join(dir, 'big.raw'), Buffer.concat([raw, Buffer.alloc(38 * 1024 * 1024)]));
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicSparse', join(dir, 'big.raw'), join(dir, 'big.vmdk'));
    twoTables = fs.readFileSync(join(dir, 'big.vmdk'));
    const sink = new MemorySink('c-stream.vmdk');
    async function* chunks(): AsyncIterable<VirtualChunk> { yield { offset: 0, data: raw }; }
    await vmdkStreamOptimizedWriter.write({ virtualSize: raw.length, chunks: chunks() }, sink);
    stream = sink.bytes();
  });

  beforeEach(() => {
    openSpy = jest.spyOn(fs.promises, 'open');
  });

  afterEach(() => {
    // Refusing an image never touches any file but the source (which here is memory).
    expect(openSpy).not.toHaveBeenCalled();
    jest.restoreAllMocks();
  });

  it('the reader modules cannot open files or run programs: they import neither fs nor child_process', () => {
    const dir = join(__dirname, '../../../toolkit/formats/vmdk');
    const writerModules = ['stream-optimized-writer.ts', 'grain-deflate-pool.ts', 'grain-deflate-worker.ts'];
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.ts') && !writerModules.includes(f))) {
      const text = fs.readFileSync(join(dir, file), 'utf8');
      expect(text).not.toMatch(/from '(node:)?(fs|fs\/promises|child_process)'/);
      expect(text).not.toMatch(/require\(/);
    }
    // The writer's deflate workers load nothing but worker_threads, zlib and the worker GC helper
    // (the pool module's types are erased).
    const worker = fs.readFileSync(join(dir, 'grain-deflate-worker.ts'), 'utf8');
    expect(worker).not.toMatch(/require\(/);
    expect([...worker.matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]).sort()).toEqual(['../../workers/worker-gc', './grain-deflate-pool', 'worker_threads', 'zlib']);
    expect(worker).toMatch(/^import type \{ GrainBatch \} from '\.\/grain-deflate-pool';$/m);
    const gc = fs.readFileSync(join(dir, '../../workers/worker-gc.ts'), 'utf8');
    expect([...gc.matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]).sort()).toEqual(['v8', 'vm']);
  });

  it('the unmutated images are accepted (so every refusal below is caused by its mutation)', async () => {
    for (const image of [sparse, stream, twoTables]) {
      const source = new BufferSource(image);
      const reader = await vmdkFormat.open(source, options);
      const bytes = await materialize(reader, source);
      expect(bytes.subarray(0, content().length).equals(content())).toBe(true);
    }
  });

  const gdSector = (image: Buffer) => Number(image.readBigUInt64LE(56));
  const footerAt = (image: Buffer) => image.length - 1024;
  const firstGt = (image: Buffer) => image.readUInt32LE(gdSector(image) * SECTOR);

  const cases: [string, () => Buffer, string, RegExp?][] = [
    ['a file shorter than its header', () => sparse.subarray(0, 300), 'vmdk-truncated'],
    ['a header cut off before its descriptor ends', () => sparse.subarray(0, 4096), 'vmdk-descriptor-offset'],
    ['a monolithicSparse truncated inside its grains', () => sparse.subarray(0, 128 * SECTOR + 1000), 'vmdk-grain-offset'],
    ['a streamOptimized truncated by one sector', () => stream.subarray(0, stream.length - SECTOR), 'vmdk-footer'],
    ['a grain directory pointer past EOF', () => patch(sparse, (b) => b.writeBigUInt64LE(0x1000000n, 56)), 'vmdk-gd-offset'],
    ['a grain table pointer past EOF', () => patch(sparse, (b) => b.writeUInt32LE(0x1000000, gdSector(sparse) * SECTOR)), 'vmdk-gt-offset'],
    ['two grain tables at the same place', () => patch(twoTables, (b) => b.writeUInt32LE(b.readUInt32LE(gdSector(twoTables) * SECTOR), gdSector(twoTables) * SECTOR + 4)), 'vmdk-gt-overlap'],
    ['a grain table entry past EOF', () => patch(sparse, (b) => b.writeUInt32LE(0x1000000, firstGt(sparse) * SECTOR)), 'vmdk-grain-offset'],
    ['a grain table entry pointing into the header', () => patch(sparse, (b) => b.writeUInt32LE(2, firstGt(sparse) * SECTOR)), 'vmdk-grain-offset'],
    ['a huge capacity', () => patch(sparse, (b) => b.writeBigUInt64LE(1n << 50n, 12)), 'vmdk-virtual-size'],
    ['a grain size that is not a power of two', () => patch(sparse, (b) => b.writeBigUInt64LE(96n, 20)), 'vmdk-grain-size'],
    ['a grain table size other than 512', () => patch(sparse, (b) => b.writeUInt32LE(4096, 44)), 'vmdk-gt-entries'],
    ['header version 4', () => patch(sparse, (b) => b.writeUInt32LE(4, 4)), 'vmdk-version'],
    ['unknown header flags', () => patch(sparse, (b) => b.writeUInt32LE(b.readUInt32LE(8) | (1 << 5), 8)), 'vmdk-flags'],
    ['a failed line-ending test (ASCII-mode transfer)', () => patch(sparse, (b) => { b[75] = 0x0a; }), 'vmdk-line-ending-test'],
    ['compression without markers', () => patch(stream, (b) => { b.writeUInt32LE(0x10001, 8); }), 'vmdk-compression'],
    ['a descriptor over 1 MiB', () => patch(sparse, (b) => b.writeBigUInt64LE(4096n, 36)), 'vmdk-descriptor-size'],
    ['no embedded descriptor (one extent of a split disk)', () => patch(sparse, (b) => b.writeBigUInt64LE(0n, 28)), 'vmdk-descriptor-missing'],
    [
      'an embedded descriptor naming /etc/passwd as a FLAT extent',
      () => withDescriptor(sparse, (t) => t.replace(/^RW (\d+) SPARSE ".*"$/m, 'RW $1 FLAT "/etc/passwd" 0')),
      'vmdk-extent-file',
      /\/etc\/passwd/,
    ],
    ['a FLAT extent in the file itself', () => withDescriptor(sparse, (t) => t.replace(/^RW (\d+) SPARSE (".*")$/m, 'RW $1 FLAT $2 0')), 'vmdk-extent-type'],
    ['a second extent', () => withDescriptor(sparse, (t) => t.replace(/^(RW \d+ SPARSE ".*")$/m, '$1\nRW 8 SPARSE "c2.vmdk"')), 'vmdk-extent-count'],
    ['an extent size that disagrees with the header', () => withDescriptor(sparse, (t) => t.replace(/^RW \d+/m, 'RW 8')), 'vmdk-extent-size'],
    ['createType monolithicFlat', () => withDescriptor(sparse, (t) => t.replace(/createType=".*"/, 'createType="monolithicFlat"')), 'vmdk-create-type', /export the disk as streamOptimized/],
    ['createType vmfs', () => withDescriptor(sparse, (t) => t.replace(/createType=".*"/, 'createType="vmfs"')), 'vmdk-create-type'],
    ['createType twoGbMaxExtentSparse', () => withDescriptor(sparse, (t) => t.replace(/createType=".*"/, 'createType="twoGbMaxExtentSparse"')), 'vmdk-create-type'],
    ['a streamOptimized createType on uncompressed grains', () => withDescriptor(sparse, (t) => t.replace(/createType=".*"/, 'createType="streamOptimized"')), 'vmdk-create-type-flags'],
    ['a delta disk with a parent', () => withDescriptor(sparse, (t) => t.replace('parentCID=ffffffff', 'parentCID=12345678\nparentFileNameHint="base.vmdk"')), 'vmdk-parent'],
    ['a descriptor line outside the grammar', () => withDescriptor(sparse, (t) => `${t}\n!include /etc/shadow\n`), 'vmdk-descriptor-syntax'],
    ['a footer without its magic', () => patch(stream, (b) => b.writeUInt32LE(0, footerAt(stream))), 'vmdk-footer'],
    ['a footer marker of the wrong type', () => patch(stream, (b) => b.writeUInt32LE(1, stream.length - 1536 + 12)), 'vmdk-footer'],
    ['a footer that disagrees with the header', () => patch(stream, (b) => b.writeBigUInt64LE(b.readBigUInt64LE(footerAt(stream) + 12) * 2n, footerAt(stream) + 12)), 'vmdk-footer-mismatch', /capacity/],
    ['a footer that still says the directory is at the end', () => patch(stream, (b) => b.writeBigUInt64LE(0xffffffffffffffffn, footerAt(stream) + 56)), 'vmdk-footer'],
    ['a damaged end-of-stream marker', () => patch(stream, (b) => b.writeUInt32LE(7, stream.length - SECTOR + 12)), 'vmdk-end-of-stream'],
    ['a grain marker claiming a huge compressed size (decompression bomb)', () => patch(stream, (b) => b.writeUInt32LE(0xfffffff0, 128 * SECTOR + 8)), 'vmdk-grain-marker-size'],
    ['a grain marker for another grain', () => patch(stream, (b) => b.writeBigUInt64LE(999n * 128n, 128 * SECTOR)), 'vmdk-grain-marker-lba'],
    [
      'a grain marker whose size runs into the next grain',
      () => patch(stream, (b) => b.writeUInt32LE(100_000, 128 * SECTOR + 8)),
      'vmdk-grain-marker-size',
      /more than the \d+ before the next grain/,
    ],
  ];

  for (const [label, make, check, message] of cases) {
    it(`refuses ${label} (${check})`, async () => {
      const outcome = await refuse(make());
      expect(outcome.check).toBe(check);
      if (message) expect(outcome.message).toMatch(message);
      expect(outcome.ms).toBeLessThan(2000);
      expect(outcome.reads).toBeLessThan(40);
    });
  }

  it('refuses a capacity over the configured limit', async () => {
    const outcome = await refuse(sparse, 1024 * 1024);
    expect(outcome.check).toBe('vmdk-virtual-size');
  });

  describe('standalone descriptor files', () => {
    const descriptorFile = (createType: string, extent: string) =>
      Buffer.from(`# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="${createType}"\n\n# Extent description\n${extent}\n\n#DDB\nddb.adapterType = "lsilogic"\n`);

    it('refuses monolithicFlat with a message telling the user what to do', async () => {
      const outcome = await refuse(descriptorFile('monolithicFlat', 'RW 4096 FLAT "disk-flat.vmdk" 0'));
      expect(outcome.check).toBe('vmdk-create-type');
      expect(outcome.message).toBe('vmdk: check subformat-accepted failed: VMDK createType "monolithicFlat" is not accepted; export the disk as streamOptimized (or monolithicSparse)');
    });

    it('refuses a descriptor naming /etc/passwd as a FLAT extent', async () => {
      const outcome = await refuse(descriptorFile('monolithicSparse', 'RW 4096 FLAT "/etc/passwd" 0'));
      expect(outcome.check).toBe('vmdk-extent-file');
    });

    it('refuses even an acceptable-looking descriptor: its data is in another file', async () => {
      const outcome = await refuse(descriptorFile('monolithicSparse', 'RW 4096 SPARSE "disk-s001.vmdk"'));
      expect(outcome.check).toBe('vmdk-descriptor-file');
    });

    it('refuses a descriptor file over 1 MiB without parsing it', async () => {
      const big = Buffer.concat([descriptorFile('monolithicSparse', 'RW 4096 SPARSE "x.vmdk"'), Buffer.alloc(1024 * 1024, 0x23)]);
      const outcome = await refuse(big);
      expect(outcome.check).toBe('vmdk-descriptor-size');
      expect(outcome.reads).toBe(1);
    });
  });
});
