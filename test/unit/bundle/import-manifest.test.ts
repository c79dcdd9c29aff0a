import { buildImportManifest, parseImportManifest as parseWithDefaults, partRanges, ManifestError, MIN_PART_BYTES, type ImportManifest } from '../../../toolkit/bundle/import-manifest';

/** These tests are about tiling and syntax, with parts of a few bytes; the minimum part size has its own tests below. */
const parseImportManifest = (xml: string) => parseWithDefaults(xml, { minPartBytes: 1 });

function manifestWith(ranges: [number, number][], size: number): string {
  const parts = ranges.map(([start, end], index) =>
    `<part index="${index}"><byte-range start="${start}" end="${end}"/><key>p/disk.part.${index}</key>` +
    `<head-url>http://s3/h?a=1&amp;b=${index}</head-url><get-url>http://s3/g?a=1&amp;b=${index}</get-url></part>`).join('');
  return `<?xml version="1.0"?><manifest><version>2010-11-15</version><file-format>RAW</file-format>` +
    `<importer><name>t</name><version>1</version><release>1</release></importer>` +
    `<import><size>${size}</size><volume-size>1</volume-size><parts count="${ranges.length}">${parts}</parts></import></manifest>`;
}

describe('import manifest', () => {
  test('round-trips what buildImportManifest writes, URLs with & intact', () => {
    const manifest: ImportManifest = {
      version: '2010-11-15', fileFormat: 'VMDK', size: 25, volumeSizeGiB: 2,
      selfDestructUrl: 'http://127.0.0.1:8774/b/m.xml?X-Amz-Signature=abc&X-Amz-Date=1',
      importer: { name: 'imaging', version: '0.1.0', release: '1' },
      parts: partRanges(25, 10).map((r) => ({ ...r, key: `k.${r.index}`, headUrl: `http://h/${r.index}?a=1&b=2`, getUrl: `http://g/${r.index}?a=1&b=2`, deleteUrl: `http://d/${r.index}` })),
    };
    const xml = buildImportManifest(manifest);
    expect(xml).toContain('a=1&amp;b=2');
    expect(parseImportManifest(xml)).toEqual(manifest);
  });

  test('splits into parts with inclusive ends', () => {
    expect(partRanges(25, 10)).toEqual([{ index: 0, start: 0, end: 9 }, { index: 1, start: 10, end: 19 }, { index: 2, start: 20, end: 24 }]);
    expect(partRanges(20, 10)).toHaveLength(2);
  });

  test('accepts consistently exclusive ends (the AWS sample) and normalises them', () => {
    const m = parseImportManifest(manifestWith([[0, 10], [10, 20], [20, 25]], 25));
    expect(m.parts.map((p) => [p.start, p.end])).toEqual([[0, 9], [10, 19], [20, 24]]);
    expect(m.parts[1].getUrl).toBe('http://s3/g?a=1&b=1');
  });

  test.each([
    ['overlap', [[0, 9], [5, 24]], 25, /overlaps the previous part/],
    ['gap', [[0, 9], [12, 24]], 25, /leaves a gap: bytes 10..11/],
    ['past the size', [[0, 9], [10, 30]], 25, /past the declared size of 25/],
    ['short of the size', [[0, 9], [10, 19]], 25, /cover 20 bytes but the declared size is 25/],
  ] as [string, [number, number][], number, RegExp][])('refuses parts that %s', (_name, ranges, size, message) => {
    expect(() => parseImportManifest(manifestWith(ranges, size))).toThrow(message);
  });

  test.each([
    ['not XML', 'this is not xml <<<', /not well-formed XML|<manifest> root/],
    ['no manifest root', '<foo/>', /<manifest> root/],
    ['entity declarations', '<!DOCTYPE x [<!ENTITY a "b">]><manifest/>', /DOCTYPE/],
    ['bad format', manifestWith([[0, 9]], 10).replace('RAW', 'ISO'), /file-format "ISO"/],
    ['non-numeric size', manifestWith([[0, 9]], 10).replace('<size>10</size>', '<size>ten</size>'), /not a whole number/],
    ['wrong count', manifestWith([[0, 9]], 10).replace('count="1"', 'count="3"'), /says it has 3 parts but lists 1/],
  ])('refuses a manifest that is %s', (_name, xml, message) => {
    expect(() => parseImportManifest(xml)).toThrow(ManifestError);
    expect(() => parseImportManifest(xml)).toThrow(message);
  });
});

describe('markup inside a value (issue 11, item 8: the XInclude refusal was cut short)', () => {
  const INCLUDE = '<xi:include href="file:///etc/passwd" parse="text"/>';
  const withPart = (extra: string, size = '25') =>
    `<?xml version="1.0"?><manifest xmlns:xi="http://www.w3.org/2001/XInclude"><version>2010-11-15</version><file-format>RAW</file-format>` +
    `<import><size>${size}</size><volume-size>1</volume-size><parts count="1"><part index="0"><byte-range start="0" end="24"/>` +
    `<key>k</key><head-url>http://h</head-url><get-url>http://g</get-url>${extra}</part></parts></import></manifest>`;

  test.each([
    ['an optional value (delete-url)', withPart(`<delete-url>${INCLUDE}</delete-url>`), '<delete-url> in part 0'],
    ['a required value (size)', withPart('', INCLUDE), '<size>'],
    ['the self-destruct URL', withPart('').replace('</manifest>', `<self-destruct-url>${INCLUDE}</self-destruct-url></manifest>`), '<self-destruct-url>'],
  ])('XInclude in %s is refused with a whole message naming the field and the element', (_name, xml, field) => {
    expect(() => parseImportManifest(xml)).toThrow(ManifestError);
    expect(() => parseImportManifest(xml)).toThrow(`the import manifest's ${field} must be plain text, but it contains the element <xi:include> (XInclude is not processed); write the value itself`);
  });
});

describe('the minimum part size', () => {
  const MiB = 1024 * 1024;

  it('refuses a part but the last below 1 MiB, naming it and the rule', () => {
    const ranges: [number, number][] = [[0, MiB - 1], [MiB, 2 * MiB - 2], [2 * MiB - 1, 3 * MiB]];
    let error: unknown;
    try {
      parseWithDefaults(manifestWith(ranges, 3 * MiB + 1));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ManifestError);
    expect((error as Error).message).toBe(
      `part 1 of the import manifest is ${MiB - 1} bytes; every part but the last must be at least ${MIN_PART_BYTES} bytes (1 MiB): upload the image in larger parts (10 MiB is usual)`,
    );
  });

  it('refuses thousands of one-byte parts', () => {
    const ranges = Array.from({ length: 2500 }, (_, i): [number, number] => [i, i]);
    expect(() => parseWithDefaults(manifestWith(ranges, 2500))).toThrow(/^part 0 of the import manifest is 1 bytes; every part but the last must be at least 1048576 bytes/);
  });

  it('accepts parts of exactly 1 MiB and a shorter last part, or one part of any size', () => {
    expect(parseWithDefaults(manifestWith([[0, MiB - 1], [MiB, 2 * MiB - 1], [2 * MiB, 2 * MiB]], 2 * MiB + 1)).parts).toHaveLength(3);
    expect(parseWithDefaults(manifestWith([[0, 9]], 10)).parts).toHaveLength(1);
  });
});
