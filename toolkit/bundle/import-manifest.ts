/**
 * The EC2 import manifest (ImportVolume / ImportInstance): an XML document, version
 * 2010-11-15, listing the parts of a disk image uploaded to object storage with presigned URLs.
 * See ../shared/reference/FORMATS.md §1. Parsing is strict about what matters (the parts must
 * tile the file exactly) and lenient about what producers get wrong (inclusive vs exclusive ends).
 */
import { XMLBuilder, XMLParser } from 'fast-xml-parser';

export type ManifestFileFormat = 'RAW' | 'VMDK' | 'VHD';

export interface ImportManifestPart {
  index: number;
  /** First byte of the file in this part. */
  start: number;
  /** Last byte of the file in this part (inclusive), after normalisation. */
  end: number;
  key: string;
  headUrl: string;
  getUrl: string;
  deleteUrl?: string;
}

export interface ImportManifest {
  version: string;
  fileFormat: ManifestFileFormat;
  size: number;
  volumeSizeGiB: number;
  parts: ImportManifestPart[];
  selfDestructUrl?: string;
  importer?: { name?: string; version?: string; release?: string };
}

export class ManifestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ManifestError';
  }
}

/** Manifests are small; a larger document is refused before parsing. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_PARTS = 100_000;
/**
 * Every part but the last must hold at least this many bytes. Each part is read with requests of
 * its own, so the number of parts is the number of requests, sockets and buffers a conversion
 * may need for a given image: 23,500 one-byte parts (a legal 4 MiB manifest without this rule)
 * once exhausted the service's file descriptors. Producers write parts of megabytes (the
 * `imaging` CLI 10 MiB by default, as EC2's import tools): 1 MiB refuses none of them, and
 * bounds a 16 TiB volume's reads to whole MiB.
 */
export const MIN_PART_BYTES = 1024 * 1024;

export interface ImportManifestRules {
  /** Smallest part but the last, in bytes (default MIN_PART_BYTES). */
  minPartBytes?: number;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  processEntities: true,
  isArray: (name) => name === 'part',
});

function text(value: unknown, what: string): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    // An element inside a value (e.g. <xi:include href="file:///etc/passwd"/>) is refused by name:
    // nothing in a manifest is fetched or expanded, and the user should see why the value is not read.
    const child = Object.keys(value).find((k) => !k.startsWith('@') && k !== '#text');
    if (child !== undefined) {
      const xinclude = /(^|:)include$/.test(child) ? ' (XInclude is not processed)' : '';
      throw new ManifestError(`the import manifest's ${what} must be plain text, but it contains the element <${child}>${xinclude}; write the value itself`);
    }
    if ('#text' in value) return String((value as Record<string, unknown>)['#text']);
  }
  throw new ManifestError(`the import manifest has no ${what}`);
}

function optionalText(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  return text(value, what);
}

function wholeNumber(value: unknown, what: string): number {
  const s = text(value, what);
  if (!/^\d{1,16}$/.test(s)) throw new ManifestError(`the import manifest's ${what} "${s}" is not a whole number`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new ManifestError(`the import manifest's ${what} ${s} is too large`);
  return n;
}

export function parseImportManifest(xml: string | Buffer, rules: ImportManifestRules = {}): ImportManifest {
  const body = typeof xml === 'string' ? xml : xml.toString('utf8');
  if (Buffer.byteLength(body) > MAX_MANIFEST_BYTES) throw new ManifestError(`the import manifest is larger than ${MAX_MANIFEST_BYTES} bytes`);
  if (/<!DOCTYPE|<!ENTITY/i.test(body)) throw new ManifestError('the import manifest must not contain a DOCTYPE or entity declarations');
  let doc: Record<string, any>;
  try {
    doc = parser.parse(body, true);
  } catch (err) {
    throw new ManifestError(`the import manifest is not well-formed XML (${(err as Error).message.split('\n')[0]})`);
  }
  const root = doc?.manifest;
  if (!root || typeof root !== 'object') throw new ManifestError('the import manifest is not XML with a <manifest> root element');
  const version = text(root.version, '<version>');
  const fileFormat = text(root['file-format'], '<file-format>').toUpperCase();
  if (fileFormat !== 'RAW' && fileFormat !== 'VMDK' && fileFormat !== 'VHD') {
    throw new ManifestError(`the import manifest's file-format "${fileFormat}" is not one of RAW, VMDK, VHD`);
  }
  const imp = root.import;
  if (!imp || typeof imp !== 'object') throw new ManifestError('the import manifest has no <import> section');
  const size = wholeNumber(imp.size, '<size>');
  if (size === 0) throw new ManifestError('the import manifest declares an empty file (size 0)');
  const volumeSizeGiB = wholeNumber(imp['volume-size'], '<volume-size>');
  const rawParts: any[] = imp.parts?.part ?? [];
  if (rawParts.length === 0) throw new ManifestError('the import manifest lists no parts');
  if (rawParts.length > MAX_PARTS) throw new ManifestError(`the import manifest lists ${rawParts.length} parts; at most ${MAX_PARTS} are accepted`);
  const declaredCount = imp.parts?.['@count'];
  if (declaredCount !== undefined && Number(declaredCount) !== rawParts.length) {
    throw new ManifestError(`the import manifest says it has ${declaredCount} parts but lists ${rawParts.length}`);
  }
  const parts = rawParts.map((p) => {
    const range = p['byte-range'];
    if (!range || typeof range !== 'object') throw new ManifestError(`part ${p['@index'] ?? '?'} of the import manifest has no <byte-range>`);
    return {
      index: wholeNumber(p['@index'], 'part index'),
      start: wholeNumber(range['@start'], 'byte-range start'),
      end: wholeNumber(range['@end'], 'byte-range end'),
      key: text(p.key, `<key> in part ${p['@index']}`),
      headUrl: text(p['head-url'], `<head-url> in part ${p['@index']}`),
      getUrl: text(p['get-url'], `<get-url> in part ${p['@index']}`),
      deleteUrl: optionalText(p['delete-url'], `<delete-url> in part ${p['@index']}`),
    };
  });
  parts.sort((a, b) => a.index - b.index);
  const tiled = normaliseRanges(parts, size);
  checkPartSizes(tiled, rules.minPartBytes ?? MIN_PART_BYTES);
  return {
    version,
    fileFormat,
    size,
    volumeSizeGiB,
    parts: tiled,
    selfDestructUrl: optionalText(root['self-destruct-url'], '<self-destruct-url>'),
    importer: root.importer && typeof root.importer === 'object'
      ? { name: optionalText(root.importer.name, '<importer><name>'), version: optionalText(root.importer.version, '<importer><version>'), release: optionalText(root.importer.release, '<importer><release>') }
      : undefined,
  };
}

/**
 * Checks that the parts tile [0, size) exactly. Ends are inclusive per the format; some producers
 * (AWS's own sample among them) write exclusive ends, which is recognised when every part follows
 * that convention consistently.
 */
function normaliseRanges(parts: ImportManifestPart[], size: number): ImportManifestPart[] {
  parts.forEach((p, i) => {
    if (p.index !== i) throw new ManifestError(`the import manifest's part indexes must run 0..${parts.length - 1}; found ${p.index} at position ${i}`);
  });
  const tiles = (endAdjust: number) =>
    parts.every((p, i) => {
      const end = p.end - endAdjust;
      const expectedStart = i === 0 ? 0 : parts[i - 1].end - endAdjust + 1;
      return p.start === expectedStart && end >= p.start;
    }) && parts[parts.length - 1].end - endAdjust === size - 1;
  if (tiles(0)) return parts;
  if (tiles(1)) return parts.map((p) => ({ ...p, end: p.end - 1 }));
  // Name the first problem precisely.
  let expected = 0;
  for (const p of parts) {
    if (p.end < p.start) throw new ManifestError(`part ${p.index} of the import manifest ends (${p.end}) before it starts (${p.start})`);
    if (p.start < expected) throw new ManifestError(`part ${p.index} of the import manifest overlaps the previous part (starts at ${p.start}, previous part ends at ${expected - 1})`);
    if (p.start > expected) throw new ManifestError(`the import manifest leaves a gap: bytes ${expected}..${p.start - 1} are in no part`);
    if (p.end >= size) throw new ManifestError(`part ${p.index} of the import manifest ends at byte ${p.end}, past the declared size of ${size} bytes`);
    expected = p.end + 1;
  }
  throw new ManifestError(`the import manifest's parts cover ${expected} bytes but the declared size is ${size} bytes`);
}

/** Refuses a part other than the last that is shorter than `minimum` bytes (see MIN_PART_BYTES). */
function checkPartSizes(parts: ImportManifestPart[], minimum: number): void {
  for (let i = 0; i < parts.length - 1; i++) {
    const length = parts[i].end - parts[i].start + 1;
    if (length < minimum) {
      throw new ManifestError(
        `part ${parts[i].index} of the import manifest is ${length} bytes; every part but the last must be at least ${minimum} bytes ` +
          `(${describeBytes(minimum)}): upload the image in larger parts (10 MiB is usual)`,
      );
    }
  }
}

function describeBytes(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${bytes} bytes`;
}

const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@', format: true, suppressEmptyNode: false });

/** Renders a manifest as producers (euca2ools, our CLI) write it. */
export function buildImportManifest(manifest: ImportManifest): string {
  const doc = {
    manifest: {
      version: manifest.version,
      'file-format': manifest.fileFormat,
      importer: {
        name: manifest.importer?.name ?? 'imaging',
        version: manifest.importer?.version ?? '0.1.0',
        release: manifest.importer?.release ?? '1',
      },
      ...(manifest.selfDestructUrl ? { 'self-destruct-url': manifest.selfDestructUrl } : {}),
      import: {
        size: manifest.size,
        'volume-size': manifest.volumeSizeGiB,
        parts: {
          '@count': manifest.parts.length,
          part: manifest.parts.map((p) => ({
            '@index': p.index,
            'byte-range': { '@start': p.start, '@end': p.end },
            key: p.key,
            'head-url': p.headUrl,
            'get-url': p.getUrl,
            ...(p.deleteUrl ? { 'delete-url': p.deleteUrl } : {}),
          })),
        },
      },
    },
  };
  return `<?xml version="1.0" encoding="UTF-8"?>\n${builder.build(doc)}`;
}

/** Splits a file of `size` bytes into part ranges of `partSize` (the last may be shorter). */
export function partRanges(size: number, partSize: number): { index: number; start: number; end: number }[] {
  const ranges = [];
  for (let start = 0, index = 0; start < size; start += partSize, index++) {
    ranges.push({ index, start, end: Math.min(start + partSize, size) - 1 });
  }
  return ranges;
}
