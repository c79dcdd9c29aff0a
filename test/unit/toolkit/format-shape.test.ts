/**
 * What every format shares: the one extent coalescer, the named safety checks and their
 * vocabulary, and refusals that say "<format>: check <name> failed: …". The per-format tests
 * check each rule against real images; this one checks that the formats speak alike.
 */
import { ImageFormatError } from '../../../toolkit/errors';
import { coalesceExtents, ExtentCoalescer } from '../../../toolkit/formats/extent-coalescer';
import { DEFAULT_MAX_VIRTUAL_SIZE, type Extent } from '../../../toolkit/formats/format';
import { parseOvf } from '../../../toolkit/formats/ova';
import { ovaChecks } from '../../../toolkit/formats/ova/checks';
import { qcow2Format, QCOW2_CHECKS } from '../../../toolkit/formats/qcow2';
import { qcow2Checks } from '../../../toolkit/formats/qcow2/checks';
import { CHECK_VOCABULARY, declareChecks, refusal, type CheckName, type SafetyCheck } from '../../../toolkit/formats/safety-checks';
import { vhdFormat } from '../../../toolkit/formats/vhd';
import { vhdChecks } from '../../../toolkit/formats/vhd/checks';
import { vhdxFormat } from '../../../toolkit/formats/vhdx';
import { vhdxChecks } from '../../../toolkit/formats/vhdx/checks';
import { vmdkFormat } from '../../../toolkit/formats/vmdk';
import { vmdkChecks } from '../../../toolkit/formats/vmdk/checks';
import { BufferSource } from '../../helpers/memory-io';

const options = { maxVirtualSize: DEFAULT_MAX_VIRTUAL_SIZE };

async function refusalOf(open: Promise<unknown>): Promise<ImageFormatError> {
  try {
    await open;
  } catch (error) {
    if (error instanceof ImageFormatError) return error;
    throw error;
  }
  throw new Error('the image was accepted');
}

describe('the extent coalescer', () => {
  const zero = (start: number, length: number): Extent => ({ kind: 'zero', start, length });
  const data = (start: number, length: number, sourceOffset: number): Extent => ({ kind: 'data', start, length, sourceOffset });
  const compressed = (start: number, length: number, sourceOffset: number): Extent => ({
    kind: 'compressed', start, length, sourceOffset, sourceLength: 100, codec: 'deflate', unitSize: length,
  });

  async function coalesced(pieces: Extent[]): Promise<Extent[]> {
    const out: Extent[] = [];
    for await (const extent of coalesceExtents(pieces)) out.push(extent);
    return out;
  }

  test('joins zero runs, and data runs contiguous both on the disk and in the file', async () => {
    expect(await coalesced([zero(0, 10), zero(10, 5), data(15, 10, 100), data(25, 10, 110), zero(35, 5)])).toEqual([
      zero(0, 15),
      data(15, 20, 100),
      zero(35, 5),
    ]);
  });

  test('keeps apart data that does not continue in the file, and every compressed unit', async () => {
    const pieces = [data(0, 10, 100), data(10, 10, 200), compressed(20, 10, 300), compressed(30, 10, 400)];
    expect(await coalesced(pieces)).toEqual(pieces);
  });

  test('never changes the pieces it is given', async () => {
    const pieces = [zero(0, 10), zero(10, 10), data(20, 10, 0), data(30, 10, 10)];
    const before = JSON.parse(JSON.stringify(pieces));
    await coalesced(pieces);
    expect(pieces).toEqual(before);
  });

  test('add/flush gives what the stream gives', async () => {
    const pieces = [zero(0, 4), data(4, 4, 8), data(8, 4, 12), zero(12, 4), zero(16, 4)];
    const coalescer = new ExtentCoalescer();
    const out: Extent[] = [];
    for (const piece of pieces) {
      const done = coalescer.add(piece);
      if (done) out.push(done);
    }
    out.push(coalescer.flush()!);
    expect(out).toEqual(await coalesced(pieces));
    expect(coalescer.flush()).toBeUndefined();
  });
});

describe('named safety checks', () => {
  const tables: Record<string, Record<string, SafetyCheck>> = {
    qcow2: qcow2Checks, vmdk: vmdkChecks, vhd: vhdChecks, vhdx: vhdxChecks, ova: ovaChecks,
  };

  test('every format declares its checks with names from the one vocabulary and distinct codes', () => {
    for (const [format, table] of Object.entries(tables)) {
      const checks = Object.values(table);
      expect(checks.length).toBeGreaterThan(0);
      for (const check of checks) {
        expect(check.format).toBe(format);
        expect(Object.keys(CHECK_VOCABULARY)).toContain(check.name);
      }
      expect(new Set(checks.map((c) => c.code)).size).toBe(checks.length);
    }
  });

  test('the rules every disk format shares carry the same name in each', () => {
    const shared: CheckName[] = ['magic', 'virtual-size-bounded', 'block-size-valid', 'no-backing-file', 'metadata-inside-file', 'data-inside-file'];
    for (const format of ['qcow2', 'vmdk', 'vhd', 'vhdx']) {
      const names = new Set(Object.values(tables[format]).map((c) => c.name));
      for (const name of shared) expect([format, name, names.has(name)]).toEqual([format, name, true]);
    }
  });

  test('the qcow2 codes the CLI and the logs show are those of its declared checks', () => {
    expect(Object.values(QCOW2_CHECKS)).toEqual(Object.values(qcow2Checks).map((c) => c.code));
  });

  test('a declaration without checks, with an unknown name or with a code twice is refused at load', () => {
    expect(() => declareChecks('empty', {})).toThrow(/must declare its safety checks/);
    expect(() => declareChecks('x', { a: { name: 'made-up' as CheckName, code: 'x-a' } })).toThrow(/not in the vocabulary/);
    expect(() => declareChecks('x', { a: { name: 'magic', code: 'x-a' }, b: { name: 'magic', code: 'x-a' } })).toThrow(/two checks carry the code x-a/);
  });

  test('a refusal carries the code and names the format and the rule before the detail', () => {
    const error = refusal(vhdChecks.differencing, 'VHD differencing disks are not accepted; merge the chain first');
    expect(error).toBeInstanceOf(ImageFormatError);
    expect(error.check).toBe('vhd-differencing');
    expect(error.message).toBe('vhd: check no-backing-file failed: VHD differencing disks are not accepted; merge the chain first');
  });
});

describe('each format refuses by a named check', () => {
  test('qcow2', async () => {
    const image = Buffer.alloc(4096);
    image.writeUInt32BE(0x514649fb, 0);
    image.writeUInt32BE(4, 4);
    const error = await refusalOf(qcow2Format.open(new BufferSource(image), options));
    expect(error.check).toBe(QCOW2_CHECKS.version);
    expect(error.message).toMatch(/^qcow2: check version-supported failed: qcow2 version 4 is not supported/);
  });

  test('vmdk', async () => {
    const image = Buffer.alloc(4096);
    image.writeUInt32LE(0x564d444b, 0);
    image.writeUInt32LE(7, 4);
    const error = await refusalOf(vmdkFormat.open(new BufferSource(image), options));
    expect(error.check).toBe('vmdk-version');
    expect(error.message).toMatch(/^vmdk: check version-supported failed: VMDK sparse header version 7/);
  });

  test('vhd', async () => {
    const image = Buffer.alloc(4096);
    image.write('conectix', image.length - 512, 'latin1'); // a footer whose checksum (0) is wrong
    const error = await refusalOf(vhdFormat.open(new BufferSource(image), options));
    expect(error.check).toBe('vhd-footer-checksum');
    expect(error.message).toMatch(/^vhd: check footer-checksum failed: .*the VHD footer checksum is wrong/);
  });

  test('vhdx', async () => {
    const image = Buffer.alloc(1024 * 1024);
    image.write('vhdxfile', 0, 'latin1'); // and neither header valid
    const error = await refusalOf(vhdxFormat.open(new BufferSource(image), options));
    expect(error.check).toBe('vhdx-header-checksum');
    expect(error.message).toMatch(/^vhdx: check header-checksum failed: neither VHDX header is valid/);
  });

  test('ova', () => {
    expect(() => parseOvf('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><Envelope/>')).toThrow(
      /^ova: check descriptor-grammar failed: OVF descriptor declares a DOCTYPE/,
    );
    try {
      parseOvf('<!DOCTYPE x><Envelope/>');
    } catch (error) {
      expect((error as ImageFormatError).check).toBe('ova-ovf-doctype');
    }
    expect.assertions(2);
  });
});
