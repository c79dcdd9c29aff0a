import { execFileSync } from 'child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { join } from 'path';
import { seededBytes, tempDir } from '../../helpers/disk-corpus';
import { BufferSource, MemorySink } from '../../helpers/memory-io';
import { listTar, parseTarHeader, tarFileHeader, TarWriter } from '../../../toolkit/bundle/tar';
import { ImageFormatError } from '../../../toolkit/errors';

const longName = `${'deep-directory-name/'.repeat(6)}a-file-with-a-long-name.bin`; // > 100 bytes

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ImageFormatError);
    return (error as ImageFormatError).check;
  }
  throw new Error('expected a refusal');
}

describe('tar reader', () => {
  let dir: string;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeAll(() => {
    dir = tempDir('tar-');
    mkdirSync(join(dir, 'in', longName.slice(0, longName.lastIndexOf('/'))), { recursive: true });
    writeFileSync(join(dir, 'in', 'small.txt'), 'hello tar\n');
    writeFileSync(join(dir, 'in', longName), seededBytes(70_001, 3));
    writeFileSync(join(dir, 'in', 'empty'), '');
  });

  for (const format of ['gnu', 'ustar', 'pax']) {
    it(`lists GNU tar --format=${format} members with their bytes in place`, async () => {
      const archive = join(dir, `${format}.tar`);
      const names = ['small.txt', 'empty', longName]; // ustar stores the long name split into prefix + name
      execFileSync('tar', ['-cf', archive, `--format=${format}`, '-C', join(dir, 'in'), ...names]);
      const bytes = readFileSync(archive);
      const entries = await listTar(new BufferSource(bytes));
      expect(entries.map((e) => e.name)).toEqual(names);
      for (const entry of entries) {
        expect(entry.type).toBe('file');
        const expected = readFileSync(join(dir, 'in', entry.name));
        expect(entry.size).toBe(expected.length);
        expect(bytes.subarray(entry.dataOffset, entry.dataOffset + entry.size).equals(expected)).toBe(true);
      }
    });
  }

  it('reads a base-256 size', () => {
    const header = tarFileHeader('huge.vmdk', 9 * 1024 ** 3 + 5);
    expect(header[124]).toBe(0x80);
    expect(parseTarHeader(header, 0).size).toBe(9 * 1024 ** 3 + 5);
  });

  it('refuses a header with a bad checksum', async () => {
    const archive = Buffer.concat([tarFileHeader('a.txt', 3), Buffer.from('abc'), Buffer.alloc(509 + 1024)]);
    archive[0] ^= 1;
    expect(await refusal(listTar(new BufferSource(archive)))).toBe('tar-header-checksum');
  });

  it('refuses a member that runs past the end of the archive', async () => {
    const archive = Buffer.concat([tarFileHeader('a.txt', 100_000), Buffer.alloc(4096)]);
    expect(await refusal(listTar(new BufferSource(archive)))).toBe('tar-truncated');
  });

  it('refuses an oversized GNU long name', async () => {
    const header = tarFileHeader('x'.repeat(200), 1);
    header.write('00000020000\0', 124, 'latin1'); // the long-name entry claims 8 KiB
    const fix = header.subarray(0, 512);
    fix.fill(0x20, 148, 156);
    fix.write(`${fix.reduce((a, b) => a + b, 0).toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    const archive = Buffer.concat([header, Buffer.alloc(8192)]);
    expect(await refusal(listTar(new BufferSource(archive)))).toBe('tar-long-name');
  });

  it('refuses more members than allowed', async () => {
    const members = Array.from({ length: 5 }, (_, i) => Buffer.concat([tarFileHeader(`f${i}`, 0)]));
    expect(await refusal(listTar(new BufferSource(Buffer.concat([...members, Buffer.alloc(1024)])), { maxEntries: 4 }))).toBe('tar-entries');
  });
});

describe('tar writer', () => {
  it('writes an archive GNU tar lists and extracts, long names included', async () => {
    const dir = tempDir('tar-write-');
    const sink = new MemorySink();
    const tar = new TarWriter(sink);
    const big = seededBytes(100_003, 5);
    await tar.addBuffer('descriptor.ovf', Buffer.from('<Envelope/>'));
    await tar.addEntry(longName.replace(/\//g, '_'), big.length, async (out) => {
      await out.write(big.subarray(0, 1000));
      await out.write(big.subarray(1000));
    });
    await tar.finish();
    const archive = join(dir, 'out.tar');
    writeFileSync(archive, sink.bytes());
    expect(execFileSync('tar', ['tf', archive], { encoding: 'utf8' }).trim().split('\n')).toEqual(['descriptor.ovf', longName.replace(/\//g, '_')]);
    execFileSync('tar', ['xf', archive, '-C', dir]);
    expect(readFileSync(join(dir, longName.replace(/\//g, '_'))).equals(big)).toBe(true);
    const entries = await listTar(new BufferSource(sink.bytes()));
    expect(entries.map((e) => [e.name, e.size])).toEqual([['descriptor.ovf', 11], [longName.replace(/\//g, '_'), big.length]]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a body that does not match the declared size', async () => {
    const tar = new TarWriter(new MemorySink());
    await expect(tar.addEntry('a', 10, async (out) => out.write(Buffer.alloc(9)))).rejects.toThrow(/declared as 10 bytes/);
  });
});
