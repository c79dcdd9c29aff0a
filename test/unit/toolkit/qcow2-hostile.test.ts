/**
 * Hostile qcow2 images, made by patching real qemu-img output: each must be refused by its own
 * named check, quickly, with bounded reads, and without the reader touching any file but the
 * source (no backing file, no data file, no subprocess).
 */
import * as fs from 'fs';
import { join } from 'path';
import { deflateRawSync } from 'zlib';
import { qemuImg, seededBytes, tempDir } from '../../helpers/disk-corpus';
import { materialize } from '../../helpers/block-map-to-raw';
import { FileSource } from '../../../toolkit/io/file-source';
import type { RandomAccessSource } from '../../../toolkit/io/source';
import { ImageFormatError } from '../../../toolkit/errors';
import { DEFAULT_MAX_VIRTUAL_SIZE, type Extent } from '../../../toolkit/formats/format';
import { qcow2Format, QCOW2_CHECKS } from '../../../toolkit/formats/qcow2';
import { inflateExtent } from '../../../toolkit/convert/codec';

const MiB = 1024 * 1024;
const CLUSTER = 64 * 1024;

let dir: string;
let rawPath: string;
/** compat=1.1, 64 KiB clusters, data at the start, zeros after. */
let v3: string;
let v2: string;
let compressed: string;
let extendedL2: string;

beforeAll(() => {
  dir = tempDir('qcow2-hostile-');
  rawPath = join(dir, 'small.raw');
  const raw = Buffer.alloc(6 * MiB);
  seededBytes(2 * MiB + 4096, 3).copy(raw, 0);
  seededBytes(512 * 1024, 5).copy(raw, 4 * MiB);
  fs.writeFileSync(rawPath, raw);
  v3 = convert('base-v3.qcow2', ['-o', 'compat=1.1']);
  v2 = convert('base-v2.qcow2', ['-o', 'compat=0.10']);
  compressed = convert('base-compressed.qcow2', ['-c']);
  extendedL2 = convert('base-extl2.qcow2', ['-o', 'extended_l2=on,cluster_size=64k']);
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function convert(name: string, args: string[]): string {
  const path = join(dir, name);
  qemuImg('convert', '-f', 'raw', '-O', 'qcow2', ...args, rawPath, path);
  return path;
}

let patchCount = 0;
/** Copies a real image and applies `patch` to its bytes. */
function patched(base: string, patch: (image: Buffer) => Buffer | void): string {
  const image = fs.readFileSync(base);
  const result = patch(image) ?? image;
  const path = join(dir, `patched-${++patchCount}.qcow2`);
  fs.writeFileSync(path, result);
  return path;
}

/** Independent of the reader under test: the few header and table facts the patches need. */
const l1TableOffset = (image: Buffer): number => Number(image.readBigUInt64BE(40));
const OFFSET_MASK = 0x00fffffffffffe00n;
function firstL2TableOffset(image: Buffer): number {
  return Number(image.readBigUInt64BE(l1TableOffset(image)) & OFFSET_MASK);
}
/** Byte offset (in the file) of the first L2 entry matching `wanted`. */
function findL2Entry(image: Buffer, entrySize: number, wanted: (entry: bigint) => boolean): number {
  const table = firstL2TableOffset(image);
  for (let at = table; at < table + CLUSTER; at += entrySize) if (wanted(image.readBigUInt64BE(at))) return at;
  throw new Error('no such L2 entry in the test image');
}
const isStandardData = (e: bigint): boolean => (e & (1n << 62n)) === 0n && (e & OFFSET_MASK) !== 0n;
const isCompressed = (e: bigint): boolean => (e & (1n << 62n)) !== 0n;
function setIncompatibleBit(image: Buffer, bit: number): void {
  image.writeBigUInt64BE(image.readBigUInt64BE(72) | (1n << BigInt(bit)), 72);
}

/** Counts what the reader reads, to show refusals are cheap whatever the header declares. */
class CountingSource implements RandomAccessSource {
  bytesRead = 0;
  constructor(private readonly inner: RandomAccessSource) {}
  get size(): number { return this.inner.size; }
  get name(): string { return this.inner.name; }
  read(offset: number, length: number): Promise<Buffer> {
    this.bytesRead += length;
    return this.inner.read(offset, length);
  }
  close(): Promise<void> { return this.inner.close(); }
}

/** Everything a reader could use to reach another file or run a program. */
// The real module objects (an `import * as` namespace has read-only properties jest cannot spy on).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fsModule: typeof import('fs') = require('fs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const childProcess: typeof import('child_process') = require('child_process');

function spyOnEscapes(): jest.SpyInstance[] {
  const fsNames = ['openSync', 'open', 'readFileSync', 'createReadStream'] as const;
  const promiseNames = ['open', 'readFile'] as const;
  const processNames = ['spawn', 'spawnSync', 'execFile', 'execFileSync', 'exec', 'execSync'] as const;
  return [
    ...fsNames.map((n) => jest.spyOn(fsModule, n).mockName(`fs.${n}`)),
    ...promiseNames.map((n) => jest.spyOn(fsModule.promises, n).mockName(`fs.promises.${n}`)),
    ...processNames.map((n) => jest.spyOn(childProcess, n).mockName(`child_process.${n}`)),
  ] as jest.SpyInstance[];
}

/** Opens and walks the whole block map; returns the refusal. */
async function refusalOf(path: string, maxVirtualSize = DEFAULT_MAX_VIRTUAL_SIZE): Promise<ImageFormatError> {
  const source = new CountingSource(await FileSource.open(path));
  let spies: jest.SpyInstance[] = [];
  const started = performance.now();
  let outcome: unknown;
  try {
    spies = spyOnEscapes();
    const head = await source.read(0, Math.min(64 * 1024, source.size));
    expect(await qcow2Format.sniff(head, source)).toBe(true);
    const reader = await qcow2Format.open(source, { maxVirtualSize });
    for await (const extent of reader.blockMap()) void extent;
    outcome = 'accepted';
  } catch (error) {
    outcome = error;
  } finally {
    const elapsed = performance.now() - started;
    const escapes = spies.filter((s) => s.mock.calls.length > 0).map((s) => s.getMockName());
    spies.forEach((s) => s.mockRestore());
    await source.close();
    expect(escapes).toEqual([]);
    expect(elapsed).toBeLessThan(1000);
    // The header cluster, one L1 slice and an L2 table at most, plus the 64 KiB sniff head.
    expect(source.bytesRead).toBeLessThan(512 * 1024);
  }
  if (!(outcome instanceof ImageFormatError)) throw new Error(`${path} was not refused: ${String(outcome)}`);
  return outcome;
}

describe('qcow2 hostile images are refused by name', () => {
  test('the unpatched base images are accepted (so each refusal below is due to its patch)', async () => {
    for (const base of [v3, v2, compressed, extendedL2]) {
      const source = await FileSource.open(base);
      try {
        const reader = await qcow2Format.open(source, { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE });
        const raw = await materialize(reader, source);
        expect(raw.equals(fs.readFileSync(rawPath))).toBe(true);
      } finally {
        await source.close();
      }
    }
  });

  const cases: Array<[string, () => string, string, RegExp?]> = [
    ['backing file naming /etc/passwd (patched)', () => patched(v3, (image) => {
      const name = Buffer.from('/etc/passwd');
      name.copy(image, 0x8000);
      image.writeBigUInt64BE(0x8000n, 8);
      image.writeUInt32BE(name.length, 16);
    }), QCOW2_CHECKS.backingFile, /"\/etc\/passwd"/],
    ['backing file made by qemu-img create -b /etc/passwd', () => {
      const path = join(dir, 'backed.qcow2');
      qemuImg('create', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', path);
      return path;
    }, QCOW2_CHECKS.backingFile, /\/etc\/passwd/],
    ['external data file made by qemu-img (data file extension)', () => {
      const path = join(dir, 'datafile.qcow2');
      qemuImg('create', '-f', 'qcow2', '-o', `data_file=${join(dir, 'datafile.raw')}`, path, '4M');
      return path;
    }, QCOW2_CHECKS.externalDataFile, /datafile\.raw/],
    ['incompatible bit 2 (external data file) without the extension', () => patched(v3, (i) => setIncompatibleBit(i, 2)), QCOW2_CHECKS.externalDataFile],
    ['unknown incompatible bit 7', () => patched(v3, (i) => setIncompatibleBit(i, 7)), QCOW2_CHECKS.unknownIncompatibleFeatures, /bits 7\b/],
    ['unknown incompatible bits 5 and 63', () => patched(v3, (i) => { setIncompatibleBit(i, 5); setIncompatibleBit(i, 63); }), QCOW2_CHECKS.unknownIncompatibleFeatures, /5, 63/],
    ['dirty bit', () => patched(v3, (i) => setIncompatibleBit(i, 0)), QCOW2_CHECKS.dirty, /qemu-img check -r all/],
    ['corrupt bit', () => patched(v3, (i) => setIncompatibleBit(i, 1)), QCOW2_CHECKS.corrupt],
    ['zstd compression made by qemu-img', () => convert('zstd.qcow2', ['-c', '-o', 'compression_type=zstd']), QCOW2_CHECKS.compressionType,
      /^qcow2: check compression-supported failed: qcow2 zstd compression is not supported; convert with compression_type=zlib$/],
    ['compression type bit set but deflate named', () => patched(v3, (i) => setIncompatibleBit(i, 3)), QCOW2_CHECKS.compressionType],
    ['crypt_method=1 (AES)', () => patched(v3, (i) => { i.writeUInt32BE(1, 32); }), QCOW2_CHECKS.encryption],
    ['crypt_method=2 (LUKS)', () => patched(v3, (i) => { i.writeUInt32BE(2, 32); }), QCOW2_CHECKS.encryption],
    ['version 1', () => patched(v3, (i) => { i.writeUInt32BE(1, 4); }), QCOW2_CHECKS.version],
    ['version 4', () => patched(v3, (i) => { i.writeUInt32BE(4, 4); }), QCOW2_CHECKS.version],
    ['truncated header (50 bytes)', () => patched(v3, (i) => i.subarray(0, 50)), QCOW2_CHECKS.headerTruncated],
    ['truncated v3 header (90 bytes)', () => patched(v3, (i) => i.subarray(0, 90)), QCOW2_CHECKS.headerTruncated],
    ['header_length 100', () => patched(v3, (i) => { i.writeUInt32BE(100, 100); }), QCOW2_CHECKS.headerLength],
    ['header extension longer than the first cluster', () => patched(v3, (i) => { i.writeUInt32BE(0xffff0000, i.readUInt32BE(100) + 4); }),
      QCOW2_CHECKS.headerExtensions],
    ['virtual size 2^60', () => patched(v3, (i) => { i.writeBigUInt64BE(1n << 60n, 24); }), QCOW2_CHECKS.virtualSize],
    ['cluster_bits 30', () => patched(v3, (i) => { i.writeUInt32BE(30, 20); }), QCOW2_CHECKS.clusterBits],
    ['cluster_bits 8', () => patched(v3, (i) => { i.writeUInt32BE(8, 20); }), QCOW2_CHECKS.clusterBits],
    ['extended L2 with 4 KiB clusters', () => patched(extendedL2, (i) => { i.writeUInt32BE(12, 20); }), QCOW2_CHECKS.clusterBits],
    ['refcount_order 7', () => patched(v3, (i) => { i.writeUInt32BE(7, 96); }), QCOW2_CHECKS.refcountOrder],
    ['l1_size huge (2^32-1)', () => patched(v3, (i) => { i.writeUInt32BE(0xffffffff, 36); }), QCOW2_CHECKS.l1Size],
    ['l1_size too small for the disk', () => patched(v3, (i) => { i.writeUInt32BE(0, 36); }), QCOW2_CHECKS.l1Size],
    ['l1_size within limits but past EOF (4M entries)', () => patched(v3, (i) => { i.writeUInt32BE(4 * 1024 * 1024, 36); }), QCOW2_CHECKS.l1TableOffset],
    ['L1 table offset past EOF', () => patched(v3, (i) => { i.writeBigUInt64BE(BigInt(i.length + 100 * CLUSTER), 40); }), QCOW2_CHECKS.l1TableOffset],
    ['L1 table offset not cluster aligned', () => patched(v3, (i) => { i.writeBigUInt64BE(BigInt(l1TableOffset(i) + 8), 40); }), QCOW2_CHECKS.l1TableOffset],
    ['L1 entry with reserved bits', () => patched(v3, (i) => { const at = l1TableOffset(i); i.writeBigUInt64BE(i.readBigUInt64BE(at) | 1n << 60n, at); }),
      QCOW2_CHECKS.l1Entry],
    ['L2 table past EOF', () => patched(v3, (i) => { i.writeBigUInt64BE(BigInt(i.length + 64 * CLUSTER), l1TableOffset(i)); }), QCOW2_CHECKS.l2TableOffset],
    ['L2 table not cluster aligned', () => patched(v3, (i) => { const at = l1TableOffset(i); i.writeBigUInt64BE(i.readBigUInt64BE(at) + 512n, at); }),
      QCOW2_CHECKS.l2TableOffset],
    ['L2 entry: data cluster past EOF', () => patched(v3, (i) => {
      const at = findL2Entry(i, 8, isStandardData);
      i.writeBigUInt64BE(BigInt(i.length + 1000 * CLUSTER), at);
    }), QCOW2_CHECKS.dataClusterPastEof],
    ['L2 entry: data cluster not cluster aligned', () => patched(v3, (i) => {
      const at = findL2Entry(i, 8, isStandardData);
      i.writeBigUInt64BE(i.readBigUInt64BE(at) + 4096n, at);
    }), QCOW2_CHECKS.l2EntryAlignment],
    ['L2 entry with reserved bits', () => patched(v3, (i) => {
      const at = findL2Entry(i, 8, isStandardData);
      i.writeBigUInt64BE(i.readBigUInt64BE(at) | 1n << 58n, at);
    }), QCOW2_CHECKS.l2EntryReservedBits],
    ['zero flag in a version 2 image', () => patched(v2, (i) => {
      const at = findL2Entry(i, 8, isStandardData);
      i.writeBigUInt64BE(i.readBigUInt64BE(at) | 1n, at);
    }), QCOW2_CHECKS.zeroFlagInV2],
    ['extended L2: subcluster both allocated and zero', () => patched(extendedL2, (i) => {
      const at = findL2Entry(i, 16, isStandardData);
      i.writeBigUInt64BE(i.readBigUInt64BE(at + 8) | (1n << 32n) | 1n, at + 8);
    }), QCOW2_CHECKS.subclusterBitmap],
    ['compressed cluster past EOF', () => patched(compressed, (i) => {
      const at = findL2Entry(i, 8, isCompressed);
      // 64 KiB clusters: offset field is bits 0..53; keep the flag, point far past the end.
      i.writeBigUInt64BE((1n << 62n) | BigInt(i.length + 10 * MiB), at);
    }), QCOW2_CHECKS.compressedClusterPastEof],
  ];

  // Every row gets all four values: jest hands a `done` callback to a shorter row.
  test.each(cases.map(([name, make, check, message]) => [name, make, check, message ?? null] as const))('%s', async (_name, make, check, message) => {
    const error = await refusalOf(make());
    expect(error.check).toBe(check);
    if (message) expect(error.message).toMatch(message);
  });

  test('a file without the magic is not sniffed as qcow2, and open refuses it by name', async () => {
    const source = await FileSource.open(rawPath);
    try {
      expect(await qcow2Format.sniff(await source.read(0, 64 * 1024), source)).toBe(false);
      await expect(qcow2Format.open(source, { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE })).rejects.toMatchObject({ check: QCOW2_CHECKS.magic });
    } finally {
      await source.close();
    }
  });

  test('a broken L1 table is refused at open, before any block map is asked for', async () => {
    const path = patched(v3, (i) => { i.writeBigUInt64BE(BigInt(i.length + 64 * CLUSTER), l1TableOffset(i)); });
    const source = await FileSource.open(path);
    try {
      await expect(qcow2Format.open(source, { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE })).rejects.toMatchObject({ check: QCOW2_CHECKS.l2TableOffset });
    } finally {
      await source.close();
    }
  });

  test('a virtual size above the configured limit is refused', async () => {
    const error = await refusalOf(v3, 4 * MiB);
    expect(error.check).toBe(QCOW2_CHECKS.virtualSize);
  });

  test('every check name used above is distinct per rule and listed in QCOW2_CHECKS', () => {
    const used = new Set(cases.map((c) => c[2]));
    for (const name of used) expect(Object.values(QCOW2_CHECKS)).toContain(name);
    expect(used.size).toBeGreaterThanOrEqual(20);
  });

  test('decompression bomb: a compressed cluster that inflates beyond its cluster is refused when inflated', async () => {
    const bomb = deflateRawSync(Buffer.alloc(16 * MiB));
    const path = patched(compressed, (image) => {
      const at = findL2Entry(image, 8, isCompressed);
      const offset = image.length; // appended: offset needs no alignment for compressed data
      const extraSectors = BigInt(Math.ceil(bomb.length / 512) - 1);
      const sizeShift = 62n - (16n - 8n);
      image.writeBigUInt64BE((1n << 62n) | (extraSectors << sizeShift) | BigInt(offset), at);
      return Buffer.concat([image, bomb, Buffer.alloc(512)]);
    });
    const source = await FileSource.open(path);
    try {
      const reader = await qcow2Format.open(source, { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE });
      const extents: Extent[] = [];
      for await (const e of reader.blockMap()) extents.push(e);
      const target = extents.find((e): e is Extent & { kind: 'compressed' } => e.kind === 'compressed' && e.sourceLength >= bomb.length);
      expect(target).toBeDefined();
      // The reader bounds inflation by declaring the cluster as the unit...
      expect(target!.unitSize).toBe(CLUSTER);
      // ...and the converter's inflater refuses by name instead of producing 16 MiB.
      const packed = await source.read(target!.sourceOffset, target!.sourceLength);
      await expect(inflateExtent(target!, packed)).rejects.toMatchObject({ check: 'compressed-unit-too-large' });
      await expect(materialize(reader, source)).rejects.toThrow();
    } finally {
      await source.close();
    }
  });
});
