/**
 * The convert engine against hand-made block maps: the reader contract is where hostile images
 * attack, so each way a block map can lie gets its own case.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { deflateRawSync, deflateSync } from 'zlib';
import { ConversionCancelledError } from '../../../toolkit/convert/cancellation';
import { convertOpenedImage } from '../../../toolkit/convert/convert-image';
import { ImageFormatError } from '../../../toolkit/errors';
import type { DiskImageReader, Extent } from '../../../toolkit/formats/format';
import { FileSink } from '../../../toolkit/io/file-sink';
import { HashingSink } from '../../../toolkit/io/hashing-sink';
import type { RandomAccessSource } from '../../../toolkit/io/source';
import { seededBytes, tempDir } from '../../helpers/disk-corpus';

const KiB = 1024;
const MiB = 1024 * KiB;

/** An in-memory source that records every read, optionally slowly. */
class RecordingSource implements RandomAccessSource {
  readonly name = 'image';
  readonly reads: [number, number][] = [];
  inFlight = 0;
  maxInFlight = 0;
  bytesReturned = 0;
  constructor(
    private readonly bytes: Buffer,
    private readonly delayMs = 0,
  ) {}
  get size(): number {
    return this.bytes.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    this.reads.push([offset, length]);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    if (this.delayMs) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    this.inFlight--;
    this.bytesReturned += length;
    return Buffer.from(this.bytes.subarray(offset, offset + length));
  }
  async close(): Promise<void> {}
}

function readerOf(virtualSize: number, extents: Extent[]): DiskImageReader {
  return {
    info: { format: 'raw', virtualSize, fileSize: 0 },
    async *blockMap() {
      yield* extents;
    },
    async close() {},
  };
}

async function convertToBuffer(
  reader: DiskImageReader,
  source: RandomAccessSource,
  options: { memoryLimitBytes?: number; readConcurrency?: number; signal?: AbortSignal; onProgress?: (done: number) => void } = {},
): Promise<Buffer> {
  const path = join(tempDir(), 'out.raw');
  await convertOpenedImage(reader, { source, sink: await FileSink.create(path), output: 'raw', ...options });
  return readFileSync(path);
}

describe('convert engine', () => {
  it('assembles data, zero and compressed (zlib, deflate, skip) extents, coalescing nearby reads', async () => {
    const grainA = seededBytes(64 * KiB, 1);
    const grainB = seededBytes(64 * KiB, 2);
    const plain = seededBytes(100 * KiB, 3);
    const packedA = deflateSync(grainA); // VMDK-style zlib grain
    const packedB = deflateRawSync(grainB); // qcow2-style raw deflate cluster
    // File: [plain][16-byte marker][packedA][packedB + trailing padding]
    const padding = Buffer.alloc(300, 0xee);
    const file = Buffer.concat([plain, Buffer.alloc(16, 0xaa), packedA, packedB, padding]);
    const at = { plain: 0, a: plain.length + 16, b: plain.length + 16 + packedA.length };
    const extents: Extent[] = [
      { kind: 'data', start: 0, length: plain.length, sourceOffset: at.plain },
      { kind: 'zero', start: plain.length, length: 1 * MiB },
      { kind: 'compressed', start: plain.length + MiB, length: grainA.length, sourceOffset: at.a, sourceLength: packedA.length, codec: 'zlib', unitSize: 64 * KiB },
      // Only the second half of grain B, as when a grain straddles an extent boundary.
      { kind: 'compressed', start: plain.length + MiB + grainA.length, length: 32 * KiB, sourceOffset: at.b, sourceLength: packedB.length + padding.length, codec: 'deflate', unitSize: 64 * KiB, skip: 32 * KiB },
      { kind: 'zero', start: plain.length + MiB + grainA.length + 32 * KiB, length: 5 },
    ];
    const virtualSize = plain.length + MiB + grainA.length + 32 * KiB + 5;
    const source = new RecordingSource(file);
    const out = await convertToBuffer(readerOf(virtualSize, extents), source);
    expect(out.equals(Buffer.concat([plain, Buffer.alloc(MiB), grainA, grainB.subarray(32 * KiB), Buffer.alloc(5)]))).toBe(true);
    // One read covers everything: the pieces are close together in the file.
    expect(source.reads).toEqual([[0, file.length]]);
  });

  it('never reads zero extents and splits a big data extent into bounded parallel reads', async () => {
    const file = seededBytes(40 * MiB, 4);
    const virtualSize = 1024 * MiB + 40 * MiB;
    const extents: Extent[] = [
      { kind: 'zero', start: 0, length: 1024 * MiB },
      { kind: 'data', start: 1024 * MiB, length: 40 * MiB, sourceOffset: 0 },
    ];
    const source = new RecordingSource(file, 20);
    const path = join(tempDir(), 'out.raw');
    await convertOpenedImage(readerOf(virtualSize, extents), { source, sink: await FileSink.create(path), output: 'raw', readConcurrency: 4 });
    expect(source.bytesReturned).toBe(40 * MiB);
    expect(Math.max(...source.reads.map(([, length]) => length))).toBeLessThanOrEqual(8 * MiB);
    expect(source.maxInFlight).toBeGreaterThan(1);
    expect(source.maxInFlight).toBeLessThanOrEqual(4);
    const out = readFileSync(path);
    expect(out.length).toBe(virtualSize);
    expect(out.subarray(1024 * MiB).equals(file)).toBe(true);
  });

  it('keeps fetched-but-unwritten bytes under the memory limit with a slow writer', async () => {
    const file = seededBytes(24 * MiB, 5);
    const source = new RecordingSource(file);
    const limit = 4 * MiB;
    let maxAhead = 0;
    let consumed = 0;
    await convertToBuffer(readerOf(file.length, [{ kind: 'data', start: 0, length: file.length, sourceOffset: 0 }]), source, {
      memoryLimitBytes: limit,
      readConcurrency: 16,
      onProgress: (done) => {
        consumed = done;
        maxAhead = Math.max(maxAhead, source.bytesReturned - consumed);
      },
    });
    expect(consumed).toBe(file.length);
    expect(maxAhead).toBeGreaterThan(0);
    expect(maxAhead).toBeLessThanOrEqual(limit);
  });

  it('refuses a decompression bomb as soon as it exceeds its unit', async () => {
    const bomb = deflateRawSync(Buffer.alloc(64 * MiB)); // ~64 KiB that inflates to 64 MiB
    const source = new RecordingSource(bomb);
    const reader = readerOf(64 * KiB, [
      { kind: 'compressed', start: 0, length: 64 * KiB, sourceOffset: 0, sourceLength: bomb.length, codec: 'deflate', unitSize: 64 * KiB },
    ]);
    const attempt = convertToBuffer(reader, source);
    await expect(attempt).rejects.toBeInstanceOf(ImageFormatError);
    await expect(convertToBuffer(reader, source)).rejects.toMatchObject({ check: 'compressed-unit-too-large' });
  });

  it('refuses corrupt and short compressed units', async () => {
    const garbage = seededBytes(4 * KiB, 6);
    await expect(
      convertToBuffer(readerOf(64 * KiB, [{ kind: 'compressed', start: 0, length: 64 * KiB, sourceOffset: 0, sourceLength: garbage.length, codec: 'zlib', unitSize: 64 * KiB }]), new RecordingSource(garbage)),
    ).rejects.toMatchObject({ check: 'compressed-data-corrupt' });
    const short = deflateRawSync(Buffer.alloc(1000, 1));
    await expect(
      convertToBuffer(readerOf(64 * KiB, [{ kind: 'compressed', start: 0, length: 64 * KiB, sourceOffset: 0, sourceLength: short.length, codec: 'deflate', unitSize: 64 * KiB }]), new RecordingSource(short)),
    ).rejects.toMatchObject({ check: 'compressed-unit-short' });
  });

  describe('refuses block maps that break the contract', () => {
    const file = seededBytes(MiB, 7);
    const cases: [string, number, Extent[], string][] = [
      ['a gap', 2 * MiB, [{ kind: 'data', start: 0, length: MiB, sourceOffset: 0 }, { kind: 'zero', start: MiB + 1, length: MiB - 1 }], 'block-map-not-contiguous'],
      ['an overlap', 2 * MiB, [{ kind: 'data', start: 0, length: MiB, sourceOffset: 0 }, { kind: 'zero', start: MiB - 1, length: MiB + 1 }], 'block-map-not-contiguous'],
      ['an extent beyond the disk', MiB, [{ kind: 'zero', start: 0, length: MiB + 1 }], 'block-map-beyond-disk'],
      ['data past the end of the file', 2 * MiB, [{ kind: 'data', start: 0, length: 2 * MiB, sourceOffset: 0 }], 'extent-outside-file'],
      ['a negative file offset', MiB, [{ kind: 'data', start: 0, length: MiB, sourceOffset: -512 }], 'extent-outside-file'],
      ['compressed bytes past the end of the file', 64 * KiB, [{ kind: 'compressed', start: 0, length: 64 * KiB, sourceOffset: MiB - 10, sourceLength: 11, codec: 'zlib', unitSize: 64 * KiB }], 'extent-outside-file'],
      ['a compressed unit smaller than its extent', 64 * KiB, [{ kind: 'compressed', start: 0, length: 64 * KiB, sourceOffset: 0, sourceLength: 10, codec: 'zlib', unitSize: 32 * KiB }], 'compressed-unit-invalid'],
      ['an absurd compressed unit', 64 * KiB, [{ kind: 'compressed', start: 0, length: 64 * KiB, sourceOffset: 0, sourceLength: 10, codec: 'zlib', unitSize: 2 ** 40 }], 'compressed-unit-invalid'],
      ['an empty extent', MiB, [{ kind: 'zero', start: 0, length: 0 }, { kind: 'zero', start: 0, length: MiB }], 'block-map-invalid'],
      ['a map that stops short', 2 * MiB, [{ kind: 'data', start: 0, length: MiB, sourceOffset: 0 }], 'block-map-incomplete'],
    ];
    it.each(cases)('%s', async (_, virtualSize, extents, check) => {
      await expect(convertToBuffer(readerOf(virtualSize, extents), new RecordingSource(file))).rejects.toMatchObject({ name: 'ImageFormatError', check });
    });
  });

  it('refuses a virtual size above the limit before reading anything', async () => {
    const source = new RecordingSource(Buffer.alloc(10));
    const path = join(tempDir(), 'out.raw');
    await expect(
      convertOpenedImage(readerOf(3 * MiB, [{ kind: 'zero', start: 0, length: 3 * MiB }]), { source, sink: await FileSink.create(path), output: 'raw', maxVirtualSize: 2 * MiB }),
    ).rejects.toMatchObject({ check: 'virtual-size-too-large' });
    expect(source.reads).toEqual([]);
  });

  it('surfaces a failing read and a failing block map in order', async () => {
    const failing: RandomAccessSource = { name: 'broken', size: MiB, read: async () => Promise.reject(new Error('disk on fire')), close: async () => {} };
    await expect(convertToBuffer(readerOf(MiB, [{ kind: 'data', start: 0, length: MiB, sourceOffset: 0 }]), failing)).rejects.toThrow('disk on fire');
    const reader: DiskImageReader = {
      info: { format: 'raw', virtualSize: 2 * MiB, fileSize: MiB },
      async *blockMap() {
        yield { kind: 'zero', start: 0, length: MiB } as Extent;
        throw new ImageFormatError('grain-table-corrupt', 'grain table 7 points outside the file');
      },
      async close() {},
    };
    await expect(convertToBuffer(reader, new RecordingSource(Buffer.alloc(MiB)))).rejects.toMatchObject({ check: 'grain-table-corrupt' });
  });

  it('writes the same bytes by position (file sink) as in order (any other sink), leaving zero blocks as holes', async () => {
    // Many small grains and clusters, data with zero blocks inside, extents straddling steps.
    const parts: Buffer[] = [];
    const extents: Extent[] = [];
    const expected: Buffer[] = [];
    let fileAt = 0;
    let virtualAt = 0;
    const add = (extent: Extent, bytes: Buffer, stored?: Buffer): void => {
      extents.push(extent);
      expected.push(bytes);
      if (stored) {
        parts.push(stored);
        fileAt += stored.length;
      }
      virtualAt += bytes.length;
    };
    for (let i = 0; i < 300; i++) {
      const grain = i % 3 === 0 ? Buffer.alloc(64 * KiB) : seededBytes(64 * KiB, 100 + i);
      const packed = deflateSync(grain);
      add({ kind: 'compressed', start: virtualAt, length: grain.length, sourceOffset: fileAt, sourceLength: packed.length, codec: 'zlib', unitSize: 64 * KiB }, grain, packed);
      if (i % 50 === 7) add({ kind: 'zero', start: virtualAt, length: 3 * MiB + 5 }, Buffer.alloc(3 * MiB + 5));
      if (i % 40 === 3) {
        const data = Buffer.concat([seededBytes(100 * KiB, i), Buffer.alloc(512 * KiB), seededBytes(3 * MiB + 1, i + 1)]);
        add({ kind: 'data', start: virtualAt, length: data.length, sourceOffset: fileAt }, data, data);
      }
    }
    add({ kind: 'zero', start: virtualAt, length: 2 * MiB }, Buffer.alloc(2 * MiB));
    const file = Buffer.concat(parts);
    const want = Buffer.concat(expected);
    const positional = join(tempDir(), 'positional.raw');
    const ordered = join(tempDir(), 'ordered.raw');
    await convertOpenedImage(readerOf(want.length, extents), { source: new RecordingSource(file), sink: await FileSink.create(positional), output: 'raw', memoryLimitBytes: 32 * MiB });
    const hashing = new HashingSink(await FileSink.create(ordered));
    await convertOpenedImage(readerOf(want.length, extents), { source: new RecordingSource(file), sink: hashing, output: 'raw', memoryLimitBytes: 32 * MiB });
    expect(readFileSync(positional).equals(want)).toBe(true);
    expect(readFileSync(ordered).equals(want)).toBe(true);
  });

  it('cancels promptly while a read hangs', async () => {
    const hanging: RandomAccessSource = { name: 'hang', size: MiB, read: () => new Promise<Buffer>(() => undefined), close: async () => {} };
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const started = Date.now();
    await expect(convertToBuffer(readerOf(MiB, [{ kind: 'data', start: 0, length: MiB, sourceOffset: 0 }]), hanging, { signal: controller.signal })).rejects.toBeInstanceOf(ConversionCancelledError);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
