import { execFileSync } from 'child_process';
import { closeSync, openSync, readFileSync, writeSync } from 'fs';
import { join } from 'path';
import { convertImage } from '../../../toolkit/convert/convert-image';
import type { Extent } from '../../../toolkit/formats/format';
import { MIN_HOLE, rawExtents } from '../../../toolkit/formats/raw';
import { openImage } from '../../../toolkit/formats/registry';
import { FileSink } from '../../../toolkit/io/file-sink';
import { FileSource } from '../../../toolkit/io/file-source';
import type { ByteRange, RandomAccessSource } from '../../../toolkit/io/source';
import { fileDataRanges, sparseRangesAddon } from '../../../toolkit/io/sparse-file';
import { qemuImg, tempDir } from '../../helpers/disk-corpus';

const KiB = 1024;
const MiB = 1024 * KiB;
let dir: string;

beforeAll(() => {
  dir = tempDir();
});

/** A sparse file of `size` bytes holding `pieces` (offset, bytes) and holes elsewhere. */
function sparseFile(name: string, size: number, pieces: Array<[number, Buffer]>): string {
  const path = join(dir, name);
  execFileSync('truncate', ['-s', String(size), path]);
  const fd = openSync(path, 'r+');
  try {
    for (const [offset, bytes] of pieces) writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
  return path;
}

function filled(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) % 251 || 1;
  return bytes;
}

/** A source that reports the given ranges as its data, with no bytes behind it. */
function sourceWithRanges(size: number, ranges: Array<[number, number]> | undefined): RandomAccessSource {
  return {
    size,
    name: 'ranges',
    read: async () => {
      throw new Error('not read in this test');
    },
    dataRanges: ranges && (() => ranges.map(([start, end]): ByteRange => ({ start, length: end - start }))),
    close: async () => {},
  };
}

/** Wraps a source and records every byte range read from it. */
function recordingReads(source: RandomAccessSource): { source: RandomAccessSource; reads: Array<[number, number]> } {
  const reads: Array<[number, number]> = [];
  return {
    reads,
    source: {
      size: source.size,
      name: source.name,
      dataRanges: source.dataRanges?.bind(source),
      read: async (offset, length) => {
        reads.push([offset, offset + length]);
        return source.read(offset, length);
      },
      readInto: async (offset, target) => {
        reads.push([offset, offset + target.length]);
        return source.readInto ? source.readInto(offset, target) : void target.set(await source.read(offset, target.length));
      },
      close: () => source.close(),
    },
  };
}

describe('the sparse-file addon', () => {
  it('is built by npm install and loads', () => {
    expect(sparseRangesAddon()).not.toBeNull();
  });

  it("reports a sparse file's data ranges and nothing of its holes", () => {
    const path = sparseFile('pieces.raw', 16 * MiB + 123, [
      [1 * MiB, filled(4 * KiB, 1)],
      [8 * MiB, filled(1 * MiB, 2)],
    ]);
    const fd = openSync(path, 'r');
    try {
      expect([...fileDataRanges(fd, 0, 16 * MiB + 123)]).toEqual([
        { start: 1 * MiB, length: 4 * KiB },
        { start: 8 * MiB, length: 1 * MiB },
      ]);
      // Bounded to the asked window, cut where it ends.
      expect([...fileDataRanges(fd, 8 * MiB + 100, 8 * MiB + 200)]).toEqual([{ start: 8 * MiB + 100, length: 100 }]);
      expect([...fileDataRanges(fd, 2 * MiB, 8 * MiB)]).toEqual([]);
    } finally {
      closeSync(fd);
    }
  });

  it('treats what cannot report holes (a pipe) as all data', () => {
    const path = join(dir, 'fifo');
    execFileSync('mkfifo', [path]);
    const fd = openSync(path, 'r+'); // r+ opens a FIFO without waiting for a writer
    try {
      expect([...fileDataRanges(fd, 0, 100)]).toEqual([{ start: 0, length: 100 }]);
    } finally {
      closeSync(fd);
    }
  });

  it('refuses a closed descriptor with its errno', () => {
    const fd = openSync(sparseFile('closed.raw', MiB, []), 'r');
    closeSync(fd);
    expect(() => [...fileDataRanges(fd, 0, MiB)]).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  it('finds every range of a file with more ranges than one call returns', () => {
    const pieces: Array<[number, Buffer]> = [];
    for (let i = 0; i < 5000; i++) pieces.push([i * 64 * KiB, filled(4 * KiB, i)]);
    const path = sparseFile('many.raw', 5000 * 64 * KiB, pieces);
    const fd = openSync(path, 'r');
    try {
      const ranges = [...fileDataRanges(fd, 0, 5000 * 64 * KiB)];
      expect(ranges).toHaveLength(5000);
      expect(ranges[4999]).toEqual({ start: 4999 * 64 * KiB, length: 4 * KiB });
    } finally {
      closeSync(fd);
    }
  });
});

describe('the raw block map', () => {
  const map = (size: number, ranges?: Array<[number, number]>): Extent[] => [...rawExtents(sourceWithRanges(size, ranges))];

  it('is one data extent when the source cannot tell its holes', () => {
    expect(map(10 * MiB)).toEqual([{ kind: 'data', start: 0, length: 10 * MiB, sourceOffset: 0 }]);
  });

  it('turns holes into zero extents and reads short holes as data', () => {
    expect(
      map(10 * MiB, [
        [MIN_HOLE - 1, MiB], // the hole before it is short: data from 0
        [MiB + MIN_HOLE - 1, 2 * MiB], // a short hole: merged
        [4 * MiB, 5 * MiB],
      ]),
    ).toEqual([
      { kind: 'data', start: 0, length: 2 * MiB, sourceOffset: 0 },
      { kind: 'zero', start: 2 * MiB, length: 2 * MiB },
      { kind: 'data', start: 4 * MiB, length: MiB, sourceOffset: 4 * MiB },
      { kind: 'zero', start: 5 * MiB, length: 5 * MiB },
    ]);
  });

  it('runs data to the end over a short last hole, and is all zeros with no data', () => {
    expect(map(3 * MiB, [[MiB, 3 * MiB - MIN_HOLE + 1]])).toEqual([
      { kind: 'zero', start: 0, length: MiB },
      { kind: 'data', start: MiB, length: 2 * MiB, sourceOffset: MiB },
    ]);
    expect(map(3 * MiB, [])).toEqual([{ kind: 'zero', start: 0, length: 3 * MiB }]);
  });
});

describe('a sparse raw file', () => {
  const size = 40 * MiB + 4321;
  const pieces: Array<[number, Buffer]> = [
    [0, filled(MiB, 3)],
    [MiB + 8 * KiB, filled(8 * KiB, 4)], // after a short hole
    [20 * MiB, filled(3 * MiB + 17, 5)],
    [size - 4321, filled(4321, 6)],
  ];

  it('shows its allocated bytes, as qemu-img shows its disk size but without the last block past the end', async () => {
    const path = sparseFile('info.raw', size, pieces);
    const source = await FileSource.open(path);
    try {
      const reader = await openImage(source, { claimedFormat: 'raw' });
      // Blocks of 4 KiB: the third piece fills part of its last block, the file ends in the middle of one.
      expect(reader.info.allocatedSize).toBe(MiB + 8 * KiB + (3 * MiB + 4 * KiB) + 4321);
      const qemuDiskSize = JSON.parse(qemuImg('info', '--output=json', path))['actual-size'];
      expect(qemuDiskSize - reader.info.allocatedSize!).toBe(4 * KiB - 4321 % (4 * KiB));
      await reader.close();
    } finally {
      await source.close();
    }
  });

  it('converts to the bytes qemu-img makes, never reading its holes', async () => {
    const path = sparseFile('convert.raw', size, pieces);
    const file = await FileSource.open(path);
    const { source, reads } = recordingReads(file);
    const out = join(dir, 'convert-out.vmdk');
    try {
      await convertImage({ source, sink: await FileSink.create(out), output: 'vmdk', claimedFormat: 'raw' });
    } finally {
      await file.close();
    }
    const holes: Array<[number, number]> = [
      [2 * MiB, 20 * MiB],
      [23 * MiB + 64 * KiB, size - 4321 - 64 * KiB],
    ];
    for (const [offset, end] of reads) for (const [holeStart, holeEnd] of holes) expect(offset >= holeEnd || end <= holeStart).toBe(true);
    const ours = join(dir, 'ours.raw');
    const theirs = join(dir, 'theirs.raw');
    qemuImg('convert', '-O', 'raw', out, ours);
    qemuImg('convert', '-O', 'raw', path, theirs);
    expect(readFileSync(ours).equals(readFileSync(theirs))).toBe(true);
    // qemu-img rounds a raw disk up to whole sectors; the rest is the file itself.
    const theirsBytes = readFileSync(theirs);
    expect(theirsBytes.subarray(0, size).equals(readFileSync(path))).toBe(true);
    expect(theirsBytes.length).toBe(Math.ceil(size / 512) * 512);
  });
});
