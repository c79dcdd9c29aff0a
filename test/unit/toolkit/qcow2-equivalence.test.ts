/**
 * The qcow2 reader against qemu itself: for every qcow2 variant this qemu-img can make, the
 * block map, materialised, must equal `qemu-img convert -O raw` of the same file byte for byte.
 * Each case also asserts the on-disk feature it is about was really exercised (compressed
 * clusters, zero-flagged clusters, partial subclusters...), so a case cannot pass vacuously.
 */
import { execFileSync } from 'child_process';
import { rmSync, statSync, truncateSync } from 'fs';
import { join } from 'path';
import { makeRawDisk, qemuImg, qemuToRaw, tempDir, type MadeDisk } from '../../helpers/disk-corpus';
import { extentSummary, materialize } from '../../helpers/block-map-to-raw';
import { FileSource } from '../../../toolkit/io/file-source';
import { DEFAULT_MAX_VIRTUAL_SIZE, type Extent } from '../../../toolkit/formats/format';
import { qcow2Format, Qcow2Reader } from '../../../toolkit/formats/qcow2';

const MiB = 1024 * 1024;

let dir: string;
let disk: MadeDisk;

beforeAll(() => {
  dir = tempDir('qcow2-equivalence-');
  disk = makeRawDisk(dir);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function qemuIo(path: string, ...commands: string[]): void {
  execFileSync('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), path], { stdio: 'pipe' });
}

function hasQemuIo(): boolean {
  try {
    execFileSync('qemu-io', ['--version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

function convertToQcow2(name: string, options: string, compressed = false): string {
  const path = join(dir, name);
  qemuImg('convert', '-f', 'raw', '-O', 'qcow2', ...(compressed ? ['-c'] : []), ...(options ? ['-o', options] : []), disk.path, path);
  return path;
}

interface QemuMapEntry { start: number; length: number; present: boolean; zero: boolean; data: boolean; offset?: number }

function qemuMap(path: string): QemuMapEntry[] {
  return JSON.parse(qemuImg('map', '--output=json', '-f', 'qcow2', path)) as QemuMapEntry[];
}

/** Clusters qemu reports as zero but allocated in this layer: only the zero flag / zero bitmap does that. */
function zeroFlaggedBytes(path: string): number {
  return qemuMap(path).filter((e) => e.zero && e.present && !e.data).reduce((n, e) => n + e.length, 0);
}

async function readAll(path: string): Promise<{ raw: Buffer; reader: Qcow2Reader; extents: Extent[] }> {
  const source = await FileSource.open(path);
  try {
    const head = await source.read(0, Math.min(64 * 1024, source.size));
    expect(await qcow2Format.sniff(head, source)).toBe(true);
    const reader = (await qcow2Format.open(source, { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE })) as Qcow2Reader;
    const extents: Extent[] = [];
    for await (const extent of reader.blockMap()) extents.push(extent);
    const raw = await materialize(reader, source);
    return { raw, reader, extents };
  } finally {
    await source.close();
  }
}

async function expectSameAsQemu(path: string): Promise<{ reader: Qcow2Reader; extents: Extent[] }> {
  const expected = qemuToRaw(path, `${path}.qemu.raw`, 'qcow2');
  const { raw, reader, extents } = await readAll(path);
  expect(raw.length).toBe(expected.length);
  // Buffer.equals first (fast); on failure, report the first differing offset instead of 48 MiB of bytes.
  if (!raw.equals(expected)) {
    let at = 0;
    while (at < raw.length && raw[at] === expected[at]) at++;
    throw new Error(`${path}: our raw differs from qemu-img's at byte ${at}`);
  }
  rmSync(`${path}.qemu.raw`, { force: true });
  return { reader, extents };
}

function count(extents: Extent[], kind: Extent['kind']): number {
  return extents.filter((e) => e.kind === kind).length;
}

/** Coalescing: no two neighbours that could have been one extent. */
function expectCoalesced(extents: Extent[]): void {
  for (let i = 1; i < extents.length; i++) {
    const [a, b] = [extents[i - 1], extents[i]];
    expect(a.kind === 'zero' && b.kind === 'zero').toBe(false);
    if (a.kind === 'data' && b.kind === 'data') expect(a.sourceOffset + a.length).not.toBe(b.sourceOffset);
  }
}

describe('qcow2 reader matches qemu-img convert -O raw', () => {
  test.each([
    ['compat=0.10 (v2)', 'compat=0.10', 'v2', true],
    ['compat=1.1 (v3)', 'compat=1.1', 'v3', true],
    ['cluster_size=512', 'cluster_size=512', 'v3', true],
    ['cluster_size=4k', 'cluster_size=4k', 'v3', true],
    ['cluster_size=64k', 'cluster_size=64k', 'v3', true],
    ['cluster_size=2M', 'cluster_size=2M', 'v3', true],
    ['preallocation=off', 'preallocation=off', 'v3', true],
    // Preallocation allocates every cluster, so these have no zero extents at all.
    ['preallocation=metadata', 'preallocation=metadata', 'v3', false],
    ['preallocation=metadata, compat=0.10', 'preallocation=metadata,compat=0.10', 'v2', false],
    ['lazy_refcounts=on', 'lazy_refcounts=on', 'v3', true],
    ['refcount_bits=1', 'refcount_bits=1', 'v3', true],
  ])('%s', async (name, options, subformat, sparse) => {
    const path = convertToQcow2(`${name.replace(/[^a-z0-9]+/gi, '_')}.qcow2`, options);
    const { reader, extents } = await expectSameAsQemu(path);
    expect(reader.info.subformat).toBe(subformat);
    expect(reader.info.virtualSize).toBe(Math.ceil(disk.size / 512) * 512);
    expect(count(extents, 'data')).toBeGreaterThan(0);
    expect(count(extents, 'zero') > 0).toBe(sparse);
    expect(count(extents, 'compressed')).toBe(0);
    expectCoalesced(extents);
  });

  test.each([
    ['64k clusters', ''],
    ['512-byte clusters', 'cluster_size=512'],
    ['4k clusters', 'cluster_size=4k'],
    ['2M clusters', 'cluster_size=2M'],
    ['compat=0.10', 'compat=0.10'],
    ['extended_l2 64k', 'extended_l2=on,cluster_size=64k'],
  ])('convert -c, %s: compressed clusters', async (name, options) => {
    const path = convertToQcow2(`compressed_${name.replace(/[^a-z0-9]+/gi, '_')}.qcow2`, options, true);
    const { extents } = await expectSameAsQemu(path);
    const compressed = extents.filter((e): e is Extent & { kind: 'compressed' } => e.kind === 'compressed');
    expect(compressed.length).toBeGreaterThan(0);
    for (const e of compressed) {
      expect(e.codec).toBe('deflate');
      expect(e.unitSize).toBe(clusterSizeOf(options));
    }
  });

  test.each([
    ['64k', 'cluster_size=64k'],
    ['2M', 'cluster_size=2M'],
  ])('extended_l2=on, %s clusters (convert)', async (_name, options) => {
    const path = convertToQcow2(`extl2_${_name}.qcow2`, `extended_l2=on,${options}`);
    const { reader, extents } = await expectSameAsQemu(path);
    expect(reader.info.details?.extendedL2).toBe(true);
    expect(count(extents, 'data')).toBeGreaterThan(0);
    expectCoalesced(extents);
  });

  const withQemuIo = hasQemuIo() ? test : test.skip;

  withQemuIo.each([['64k'], ['2M']])('extended_l2=on, %s clusters: partly allocated and zeroed subclusters', async (size) => {
    const path = join(dir, `extl2_sub_${size}.qcow2`);
    qemuImg('create', '-f', 'qcow2', '-o', `extended_l2=on,cluster_size=${size}`, path, String(9 * MiB + 4096));
    // Writes smaller than a cluster allocate single subclusters; write -z on an allocated
    // cluster sets subcluster zero bits.
    qemuIo(
      path,
      'write -P 0xab 4096 4096',
      'write -P 0xcd 70000 1000',
      `write -P 0x11 ${2 * MiB} ${2 * MiB + 8192}`,
      `write -z ${2 * MiB + 65536} 65536`,
      `write -P 0x22 ${9 * MiB} 4096`,
    );
    const { extents } = await expectSameAsQemu(path);
    const sub = (size === '64k' ? 64 * 1024 : 2 * MiB) / 32;
    // Some data extent is shorter than a cluster and starts inside one: subclusters were really used.
    expect(extents.some((e) => e.kind === 'data' && e.start % (sub * 32) !== 0 && e.start % sub === 0)).toBe(true);
    expectCoalesced(extents);
  });

  withQemuIo('zero-flagged clusters: compat=1.1 image, then write -z over data', async () => {
    const path = convertToQcow2('zero_flag.qcow2', 'compat=1.1');
    // Over the ext4 partition and the random region: allocated clusters become zero-flagged.
    qemuIo(path, `write -z ${2 * MiB} ${3 * MiB}`, `write -z ${36 * MiB + 65536} ${MiB}`);
    expect(zeroFlaggedBytes(path)).toBeGreaterThan(0);
    await expectSameAsQemu(path);
  });

  withQemuIo('zero clusters: preallocation=metadata, then writes and write -z', async () => {
    const path = join(dir, 'prealloc_writes.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'preallocation=metadata', path, String(20 * MiB + 512));
    qemuIo(
      path,
      'write -P 0x5a 0 1M',
      `write -P 0xa5 ${3 * MiB + 512} 70000`,
      `write -z ${4 * MiB} ${2 * MiB}`,
      `write -P 0x77 ${20 * MiB - 4096} 4608`,
    );
    expect(zeroFlaggedBytes(path)).toBeGreaterThan(0);
    const { extents } = await expectSameAsQemu(path);
    expect(count(extents, 'zero')).toBeGreaterThan(0);
  });

  withQemuIo('compat=0.10: write -z over data (no zero flag in v2)', async () => {
    const path = convertToQcow2('zero_v2.qcow2', 'compat=0.10');
    qemuIo(path, `write -z ${2 * MiB} ${3 * MiB}`);
    await expectSameAsQemu(path);
  });

  withQemuIo('internal snapshot, then more writes: only the active state is the disk', async () => {
    const path = convertToQcow2('snapshot.qcow2', '');
    const before = qemuToRaw(path, join(dir, 'snapshot.before.raw'), 'qcow2');
    qemuImg('snapshot', '-c', 'snap1', path);
    qemuIo(path, `write -P 0x3c ${MiB + 4096} ${2 * MiB}`, `write -z ${36 * MiB} ${MiB}`, `write -P 0x99 ${44 * MiB} 12345`);
    const { reader } = await expectSameAsQemu(path);
    expect(reader.info.details?.snapshots).toBe(1);
    // The writes changed the disk, so reading the snapshot's L1 by mistake would have failed above.
    const { raw } = await readAll(path);
    expect(raw.equals(before)).toBe(false);
  });

  test('empty image: all zero, one extent', async () => {
    const path = join(dir, 'empty.qcow2');
    qemuImg('create', '-f', 'qcow2', path, String(100 * MiB));
    const { extents } = await expectSameAsQemu(path);
    expect(extents).toEqual([{ kind: 'zero', start: 0, length: 100 * MiB }]);
  });

  withQemuIo('4 TiB sparse image with a write near the end: few extents, read quickly, right bytes', async () => {
    const path = join(dir, 'huge-sparse.qcow2');
    const TiB = 1024 ** 4;
    qemuImg('create', '-f', 'qcow2', path, String(4 * TiB));
    const at = 3 * TiB + 12345;
    qemuIo(path, `write -P 0x6b ${at} 100000`);
    const source = await FileSource.open(path);
    try {
      const reader = await qcow2Format.open(source, { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE });
      const started = performance.now();
      const extents: Extent[] = [];
      for await (const e of reader.blockMap()) extents.push(e);
      expect(performance.now() - started).toBeLessThan(2000);
      expect(extents.length).toBeLessThanOrEqual(3);
      expect(extents.reduce((n, e) => n + e.length, 0)).toBe(4 * TiB);
      const data = extents.find((e): e is Extent & { kind: 'data' } => e.kind === 'data');
      expect(data).toBeDefined();
      expect(data!.start).toBeLessThanOrEqual(at);
      const bytes = await source.read(data!.sourceOffset + (at - data!.start), 100000);
      expect(bytes.every((b) => b === 0x6b)).toBe(true);
    } finally {
      await source.close();
    }
  });

  test('file truncated inside its last data cluster: the missing tail reads as zeros, as in qemu', async () => {
    const path = convertToQcow2('truncated-tail.qcow2', '');
    const last = qemuMap(path).filter((e) => e.data && e.offset !== undefined).pop()!;
    const dataEnd = last.offset! + last.length;
    const size = statSync(path).size;
    expect(dataEnd).toBeLessThanOrEqual(size);
    // Cut the file 3000 bytes before the end of the last data, inside its cluster.
    truncateSync(path, dataEnd - 3000);
    const { extents } = await expectSameAsQemu(path);
    const tail = extents[extents.length - 1];
    expect(tail.kind).toBe('zero');
  });

  test('persistent dirty bitmap (bitmaps extension, autoclear bit) is accepted and ignored', async () => {
    const path = convertToQcow2('bitmap.qcow2', '');
    qemuImg('bitmap', '--add', path, 'b0');
    expect(qemuImg('info', path)).toMatch(/bitmaps:/);
    await expectSameAsQemu(path);
  });

  test('contiguous data clusters coalesce into one extent', async () => {
    const path = convertToQcow2('coalesce.qcow2', 'preallocation=metadata');
    const source = await FileSource.open(path);
    try {
      const reader = await qcow2Format.open(source, { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE });
      const summary = await extentSummary(reader);
      const extents: Extent[] = [];
      for await (const e of reader.blockMap()) extents.push(e);
      // Preallocation lays the clusters out in guest order: the whole disk is a handful of extents.
      expect(extents.length).toBeLessThan(10);
      expect(summary.data + summary.zero).toBe(reader.info.virtualSize);
    } finally {
      await source.close();
    }
  });
});

function clusterSizeOf(options: string): number {
  const match = /cluster_size=(\w+)/.exec(options);
  if (!match) return 64 * 1024;
  const value = match[1];
  if (value.endsWith('M')) return Number(value.slice(0, -1)) * MiB;
  if (value.endsWith('k')) return Number(value.slice(0, -1)) * 1024;
  return Number(value);
}
