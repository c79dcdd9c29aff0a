/**
 * VHDX reader against qemu-img: images made at test time by `qemu-img convert -O vhdx` in both
 * subformats and several block sizes, compared byte for byte with `qemu-img convert -O raw`.
 * The hostile corpus patches those real files one structure at a time (resealing CRC-32C where
 * the structure carries one, so each refusal is about the patched field, not a checksum).
 */
import { readFileSync, rmSync, writeFileSync } from 'fs';
import { join } from 'path';
import { ImageFormatError } from '../../../toolkit/errors';
import { DEFAULT_MAX_VIRTUAL_SIZE, type ImageInfo } from '../../../toolkit/formats/format';
import { crc32c, guidBytes, guidText, vhdxChecksum, vhdxFormat } from '../../../toolkit/formats/vhdx';
import { FileSource } from '../../../toolkit/io/file-source';
import { materialize } from '../../helpers/block-map-to-raw';
import { makeRawDisk, qemuImg, qemuToRaw, seededBytes, tempDir } from '../../helpers/disk-corpus';

const options = { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE };
const KiB = 1024;
const MiB = 1024 * 1024;
let dir: string;
let raw: { path: string; size: number };
let oddRaw: { path: string; size: number };

beforeAll(() => {
  dir = tempDir('vhdx-test-');
  raw = makeRawDisk(dir);
  // Odd size: neither a block nor a MiB multiple (qemu pads raw input to whole sectors).
  oddRaw = { path: join(dir, 'odd.raw'), size: 9 * MiB + 4321 };
  const odd = Buffer.alloc(oddRaw.size);
  seededBytes(1500 * KiB, 21).copy(odd, 3 * KiB);
  seededBytes(4321, 22).copy(odd, oddRaw.size - 4321);
  writeFileSync(oddRaw.path, odd);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function withSource<T>(path: string, fn: (source: FileSource) => Promise<T>): Promise<T> {
  const source = await FileSource.open(path);
  try {
    return await fn(source);
  } finally {
    await source.close();
  }
}

async function readAll(path: string): Promise<{ bytes: Buffer; info: ImageInfo; zeroBytes: number }> {
  return withSource(path, async (source) => {
    expect(await vhdxFormat.sniff(await source.read(0, 4096), source)).toBe(true);
    const reader = await vhdxFormat.open(source, options);
    let zeroBytes = 0;
    for await (const extent of reader.blockMap()) if (extent.kind === 'zero') zeroBytes += extent.length;
    const bytes = await materialize(reader, source);
    await reader.close();
    return { bytes, info: reader.info, zeroBytes };
  });
}

async function refusal(path: string): Promise<ImageFormatError> {
  return withSource(path, async (source) => {
    const started = Date.now();
    try {
      const reader = await vhdxFormat.open(source, options);
      await materialize(reader, source);
    } catch (error) {
      if (!(error instanceof ImageFormatError)) throw error;
      expect(Date.now() - started).toBeLessThan(2000);
      return error;
    }
    throw new Error(`${path} was accepted`);
  });
}

describe('CRC-32C and GUIDs', () => {
  test('CRC-32C check value and the VHDX zeroed-field rule', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(32))).toBe(0x8a9136aa);
    const s = Buffer.from('abcdWXYZefgh');
    expect(vhdxChecksum(s, 4)).toBe(crc32c(Buffer.from('abcd\0\0\0\0efgh')));
  });

  test('GUIDs use the Microsoft mixed-endian layout', () => {
    const bat = guidBytes('2DC27766-F623-4200-9D64-115E9BFD4A08');
    expect(bat.toString('hex')).toBe('6677c22d23f600429d64115e9bfd4a08');
    expect(guidText(bat)).toBe('2DC27766-F623-4200-9D64-115E9BFD4A08');
  });
});

describe('VHDX reader matches qemu-img byte for byte', () => {
  for (const subformat of ['dynamic', 'fixed']) {
    for (const blockSize of ['1M', '8M', '32M']) {
      for (const which of ['disk', 'odd'] as const) {
        test(`${subformat}, block_size ${blockSize}, ${which}`, async () => {
          const input = which === 'disk' ? raw : oddRaw;
          const vhdx = join(dir, `${subformat}-${blockSize}-${which}.vhdx`);
          qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', `subformat=${subformat},block_size=${blockSize}`, input.path, vhdx);
          const expected = qemuToRaw(vhdx, `${vhdx}.raw`, 'vhdx');
          const { bytes, info, zeroBytes } = await readAll(vhdx);
          expect(info.virtualSize).toBe(JSON.parse(qemuImg('info', '--output=json', vhdx))['virtual-size']);
          expect(info.subformat).toBe(subformat);
          expect(info.details?.blockSize).toBe(parseInt(blockSize, 10) * MiB);
          expect(bytes.length).toBe(expected.length);
          expect(bytes.equals(expected)).toBe(true);
          // qemu's raw is the input padded to whole sectors: the comparison is against real content
          const padded = Buffer.alloc(expected.length);
          readFileSync(input.path).copy(padded);
          expect(expected.equals(padded)).toBe(true);
          if (subformat === 'dynamic' && which === 'disk') {
            // the 8+ MiB zero gap between the random region and the tail is not stored
            expect(zeroBytes).toBeGreaterThanOrEqual(blockSize === '32M' ? 0 : 4 * MiB);
            expect(info.allocatedSize! + zeroBytes).toBe(info.virtualSize);
          }
        });
      }
    }
  }
});

describe('VHDX larger than one chunk: sector bitmap entries interleaved in the BAT', () => {
  test('blocks after the first bitmap entry map to the right data', async () => {
    // One chunk covers 2^23 sectors (4 GiB at 512-byte sectors) whatever the block size; with
    // 32 MiB blocks, block 128 is the first whose BAT entry comes after a sector bitmap entry.
    const GiB = 1024 * MiB;
    const size = 4700 * MiB;
    const big = join(dir, 'big.raw');
    writeFileSync(big, Buffer.alloc(0));
    const { openSync, writeSync, closeSync, ftruncateSync, readSync } = await import('fs');
    const fd = openSync(big, 'r+');
    ftruncateSync(fd, size);
    const writes: Array<[number, Buffer]> = [
      [1 * GiB + 12345, seededBytes(70000, 31)],
      [4 * GiB + 3 * MiB + 5, seededBytes(100000, 32)],
      [size - 1000, seededBytes(1000, 33)],
    ];
    for (const [at, data] of writes) writeSync(fd, data, 0, data.length, at);
    closeSync(fd);
    const vhdx = join(dir, 'big.vhdx');
    qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=32M', big, vhdx);

    await withSource(vhdx, async (source) => {
      const reader = await vhdxFormat.open(source, options);
      expect(reader.info.virtualSize).toBe(size);
      const dataBlocks: number[] = [];
      const rawFd = openSync(big, 'r');
      try {
        for await (const extent of reader.blockMap()) {
          if (extent.kind !== 'data') continue;
          dataBlocks.push(extent.start / (32 * MiB));
          const ours = await source.read(extent.sourceOffset, extent.length);
          const expected = Buffer.alloc(extent.length);
          readSync(rawFd, expected, 0, extent.length, extent.start);
          expect(ours.equals(expected)).toBe(true);
        }
      } finally {
        closeSync(rawFd);
      }
      expect(dataBlocks).toEqual([32, 128, Math.floor((size - 1000) / (32 * MiB))]);
    });
  });
});

describe('VHDX BAT read in windows', () => {
  test('a 140 GiB sparse disk with 1 MiB blocks: a block beyond the first BAT window and 32 bitmap entries', async () => {
    const { openSync, writeSync, closeSync, ftruncateSync } = await import('fs');
    const huge = join(dir, 'huge.raw');
    const at = 129 * 1024 * MiB + 777;
    const data = seededBytes(5000, 41);
    const fd = openSync(huge, 'w');
    ftruncateSync(fd, 140 * 1024 * MiB);
    writeSync(fd, data, 0, data.length, at);
    closeSync(fd);
    const vhdx = join(dir, 'huge.vhdx');
    qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=1M', huge, vhdx);
    await withSource(vhdx, async (source) => {
      const reader = await vhdxFormat.open(source, options);
      const extents = [];
      for await (const extent of reader.blockMap()) extents.push(extent);
      // zeros, one 1 MiB data block, zeros
      expect(extents.map((e) => e.kind)).toEqual(['zero', 'data', 'zero']);
      const block = extents[1];
      expect(block.start).toBe(Math.floor(at / MiB) * MiB);
      expect(block.length).toBe(MiB);
      const stored = await source.read((block as { sourceOffset: number }).sourceOffset + (at % MiB), data.length);
      expect(stored.equals(data)).toBe(true);
      expect(reader.info.allocatedSize).toBe(MiB);
    });
  });
});

// ---------------------------------------------------------------- patching helpers

interface Layout { batOffset: number; metadataOffset: number; items: Map<string, number> }

/** Locates the BAT and metadata items of a real file, the way the spec describes (independent of the reader). */
function layoutOf(bytes: Buffer): Layout {
  const table = 192 * KiB;
  let batOffset = -1;
  let metadataOffset = -1;
  for (let i = 0; i < bytes.readUInt32LE(table + 8); i++) {
    const e = table + 16 + 32 * i;
    const guid = guidText(bytes.subarray(e, e + 16));
    const offset = Number(bytes.readBigUInt64LE(e + 16));
    if (guid === '2DC27766-F623-4200-9D64-115E9BFD4A08') batOffset = offset;
    if (guid === '8B7CA206-4790-4B9A-B8FE-575F050F886E') metadataOffset = offset;
  }
  const items = new Map<string, number>();
  for (let i = 0; i < bytes.readUInt16LE(metadataOffset + 10); i++) {
    const e = metadataOffset + 32 + 32 * i;
    items.set(guidText(bytes.subarray(e, e + 16)), metadataOffset + bytes.readUInt32LE(e + 16));
  }
  return { batOffset, metadataOffset, items };
}

const FILE_PARAMETERS = 'CAA16737-FA36-4D43-B3B6-33F0AA44E76B';
const VIRTUAL_DISK_SIZE = '2FA54224-CD1B-4876-B211-5DBED83BF4B8';
const LOGICAL_SECTOR_SIZE = '8141BF1D-A96F-4709-BA47-F233A8FAAB5F';

function resealHeaders(b: Buffer): void {
  for (const offset of [64 * KiB, 128 * KiB]) {
    const header = b.subarray(offset, offset + 4 * KiB);
    header.writeUInt32LE(vhdxChecksum(header, 4), 4);
  }
}

function resealRegionTables(b: Buffer): void {
  for (const offset of [192 * KiB, 256 * KiB]) {
    const table = b.subarray(offset, offset + 64 * KiB);
    table.writeUInt32LE(vhdxChecksum(table, 4), 4);
  }
}

/** Applies a patch to both region table copies. */
function patchRegionTables(b: Buffer, patch: (table: Buffer) => void): void {
  patch(b.subarray(192 * KiB, 256 * KiB));
  patch(b.subarray(256 * KiB, 320 * KiB));
  resealRegionTables(b);
}

describe('hostile VHDX files are refused with a named check, fast', () => {
  let base: string;
  let baseBytes: Buffer;
  beforeAll(() => {
    base = join(dir, 'hostile-base.vhdx');
    qemuImg('convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=1M', oddRaw.path, base);
    baseBytes = readFileSync(base);
  });

  function patched(name: string, patch: (b: Buffer, layout: Layout) => void): string {
    const b = Buffer.from(baseBytes);
    patch(b, layoutOf(b));
    const path = join(dir, name);
    writeFileSync(path, b);
    return path;
  }

  test('the unpatched base is accepted (so each refusal below is due to its patch)', async () => {
    const { info } = await readAll(base);
    expect(info.virtualSize).toBe(Math.ceil(oddRaw.size / 512) * 512);
  });

  test('bad CRC on both headers', async () => {
    const path = patched('bad-headers.vhdx', (b) => {
      b[64 * KiB + 100] ^= 1;
      b[128 * KiB + 100] ^= 1;
    });
    expect((await refusal(path)).check).toBe('vhdx-header-checksum');
  });

  test('bad CRC on one header: the other one is used', async () => {
    const path = patched('one-bad-header.vhdx', (b) => { b[64 * KiB + 100] ^= 1; });
    const { bytes } = await readAll(path);
    expect(bytes.equals(qemuToRaw(base, `${base}.raw`, 'vhdx'))).toBe(true);
  });

  test('non-empty log GUID', async () => {
    const path = patched('log.vhdx', (b) => {
      guidBytes('01234567-89AB-CDEF-0123-456789ABCDEF').copy(b, 64 * KiB + 48);
      guidBytes('01234567-89AB-CDEF-0123-456789ABCDEF').copy(b, 128 * KiB + 48);
      resealHeaders(b);
    });
    const error = await refusal(path);
    expect(error.check).toBe('vhdx-log-not-empty');
    expect(error.message).toBe('vhdx: check cleanly-closed failed: VHDX has an unreplayed log; open and close it in Hyper-V or run qemu-img check -r all');
  });

  test('the header with the higher sequence number is the one that counts', async () => {
    // Put a log GUID into one header only; the file is refused exactly when that header is current.
    const seq1 = Number(baseBytes.readBigUInt64LE(64 * KiB + 8));
    const seq2 = Number(baseBytes.readBigUInt64LE(128 * KiB + 8));
    const newer = seq1 > seq2 ? 64 * KiB : 128 * KiB;
    const older = newer === 64 * KiB ? 128 * KiB : 64 * KiB;
    const inNewer = patched('log-in-newer.vhdx', (b) => {
      guidBytes('01234567-89AB-CDEF-0123-456789ABCDEF').copy(b, newer + 48);
      resealHeaders(b);
    });
    const inOlder = patched('log-in-older.vhdx', (b) => {
      guidBytes('01234567-89AB-CDEF-0123-456789ABCDEF').copy(b, older + 48);
      resealHeaders(b);
    });
    expect((await refusal(inNewer)).check).toBe('vhdx-log-not-empty');
    await readAll(inOlder);
  });

  test('region table entry pointing past EOF', async () => {
    const path = patched('region-past-eof.vhdx', (b) => {
      const size = b.length;
      patchRegionTables(b, (t) => t.writeBigUInt64LE(BigInt(size + MiB), 16 + 16));
    });
    expect((await refusal(path)).check).toBe('vhdx-region-bounds');
  });

  test('region table with a huge entry count', async () => {
    const path = patched('region-count.vhdx', (b) => patchRegionTables(b, (t) => t.writeUInt32LE(0xffffff, 8)));
    expect((await refusal(path)).check).toBe('vhdx-region-table-entries');
  });

  test('bad CRC on both region tables', async () => {
    const path = patched('region-crc.vhdx', (b) => {
      b[192 * KiB + 40] ^= 1;
      b[256 * KiB + 40] ^= 1;
    });
    expect((await refusal(path)).check).toBe('vhdx-region-table-checksum');
  });

  test('an unknown region marked required', async () => {
    const path = patched('region-unknown.vhdx', (b) => patchRegionTables(b, (t) => {
      const n = t.readUInt32LE(8);
      const e = 16 + 32 * n;
      guidBytes('11111111-2222-3333-4444-555555555555').copy(t, e);
      t.writeBigUInt64LE(BigInt(b.length - MiB), e + 16);
      t.writeUInt32LE(0, e + 24); // zero length: only the required flag matters
      t.writeUInt32LE(1, e + 28);
      t.writeUInt32LE(n + 1, 8);
    }));
    expect((await refusal(path)).check).toBe('vhdx-region-unknown-required');
  });

  test('BAT region overlapping the metadata region', async () => {
    const path = patched('region-overlap.vhdx', (b, l) => patchRegionTables(b, (t) => {
      for (let i = 0; i < t.readUInt32LE(8); i++) {
        const e = 16 + 32 * i;
        if (Number(t.readBigUInt64LE(e + 16)) === l.batOffset) t.writeBigUInt64LE(BigInt(l.metadataOffset), e + 16);
      }
    }));
    expect((await refusal(path)).check).toBe('vhdx-region-overlap');
  });

  test('metadata table with too many entries', async () => {
    const path = patched('metadata-count.vhdx', (b, l) => b.writeUInt16LE(4000, l.metadataOffset + 10));
    expect((await refusal(path)).check).toBe('vhdx-metadata-entries');
  });

  test('an unknown metadata item marked required', async () => {
    const path = patched('metadata-unknown.vhdx', (b, l) => {
      const n = b.readUInt16LE(l.metadataOffset + 10);
      const e = l.metadataOffset + 32 + 32 * n;
      guidBytes('11111111-2222-3333-4444-555555555555').copy(b, e);
      b.writeUInt32LE(4, e + 24);
      b.writeUInt16LE(n + 1, l.metadataOffset + 10);
    });
    expect((await refusal(path)).check).toBe('vhdx-metadata-unknown-required');
  });

  test('metadata item pointing outside the metadata region', async () => {
    const path = patched('metadata-bounds.vhdx', (b, l) => {
      const e = l.metadataOffset + 32; // first item
      b.writeUInt32LE(0x7fffff00, e + 16);
    });
    expect((await refusal(path)).check).toBe('vhdx-metadata-bounds');
  });

  test('logical sector size other than 512 or 4096', async () => {
    const path = patched('sector-size.vhdx', (b, l) => b.writeUInt32LE(1024, l.items.get(LOGICAL_SECTOR_SIZE)!));
    expect((await refusal(path)).check).toBe('vhdx-sector-size');
  });

  test('4096-byte logical sectors: the size must be a whole number of them', async () => {
    const misaligned = patched('sector-4k-misaligned.vhdx', (b, l) => b.writeUInt32LE(4096, l.items.get(LOGICAL_SECTOR_SIZE)!));
    expect((await refusal(misaligned)).check).toBe('vhdx-virtual-size');
    const aligned = patched('sector-4k.vhdx', (b, l) => {
      b.writeUInt32LE(4096, l.items.get(LOGICAL_SECTOR_SIZE)!);
      b.writeBigUInt64LE(BigInt(8 * MiB), l.items.get(VIRTUAL_DISK_SIZE)!);
    });
    const { bytes, info } = await readAll(aligned);
    expect(info.details?.logicalSectorSize).toBe(4096);
    expect(bytes.equals(readFileSync(oddRaw.path).subarray(0, 8 * MiB))).toBe(true);
  });

  test('huge virtual size', async () => {
    const path = patched('size-huge.vhdx', (b, l) => {
      b.writeBigUInt64LE(BigInt(100) * BigInt(1024 ** 4), l.items.get(VIRTUAL_DISK_SIZE)!);
    });
    expect((await refusal(path)).check).toBe('vhdx-virtual-size-limit');
  });

  test('virtual size larger than the BAT covers', async () => {
    const path = patched('size-bat.vhdx', (b, l) => {
      b.writeBigUInt64LE(BigInt(4 * 1024 ** 4), l.items.get(VIRTUAL_DISK_SIZE)!);
    });
    expect((await refusal(path)).check).toBe('vhdx-bat-too-small');
  });

  test('HasParent set (differencing)', async () => {
    const path = patched('has-parent.vhdx', (b, l) => {
      const at = l.items.get(FILE_PARAMETERS)! + 4;
      b.writeUInt32LE(b.readUInt32LE(at) | 2, at);
    });
    const error = await refusal(path);
    expect(error.check).toBe('vhdx-differencing');
    expect(error.message).toMatch(/differencing/);
  });

  test('block size out of range', async () => {
    const path = patched('block-size.vhdx', (b, l) => b.writeUInt32LE(512 * KiB, l.items.get(FILE_PARAMETERS)!));
    expect((await refusal(path)).check).toBe('vhdx-block-size');
  });

  test('BAT entry past EOF', async () => {
    const path = patched('bat-past-eof.vhdx', (b, l) => {
      const entry = b.readBigUInt64LE(l.batOffset);
      expect(Number(entry & 7n)).toBe(6); // block 0 holds data in the base image
      b.writeBigUInt64LE((BigInt(Math.ceil(b.length / MiB) + 5) << 20n) | 6n, l.batOffset);
    });
    expect((await refusal(path)).check).toBe('vhdx-block-bounds');
  });

  test('BAT entry pointing into the metadata region', async () => {
    const path = patched('bat-into-metadata.vhdx', (b, l) => {
      b.writeBigUInt64LE((BigInt(l.metadataOffset / MiB) << 20n) | 6n, l.batOffset);
    });
    expect((await refusal(path)).check).toBe('vhdx-block-overlap');
  });

  test('two BAT entries sharing one block', async () => {
    const path = patched('bat-alias.vhdx', (b, l) => {
      b.writeBigUInt64LE(b.readBigUInt64LE(l.batOffset), l.batOffset + 8);
    });
    expect((await refusal(path)).check).toBe('vhdx-block-overlap');
  });

  test('partially present block', async () => {
    const path = patched('partial.vhdx', (b, l) => {
      b.writeBigUInt64LE((b.readBigUInt64LE(l.batOffset) & ~7n) | 7n, l.batOffset);
    });
    expect((await refusal(path)).check).toBe('vhdx-partially-present');
  });

  test('not a VHDX at all', async () => {
    await withSource(raw.path, async (source) => {
      expect(await vhdxFormat.sniff(await source.read(0, 4096), source)).toBe(false);
    });
    expect((await refusal(raw.path)).check).toBe('vhdx-signature');
  });
});
