/**
 * Property-based fuzzing (fast-check) of everything that parses what a stranger sends (issue 11):
 * the import-manifest parser, the EC2 query-request parser, the SigV4 and SigV2 verifiers, the
 * embedded S3's authentication, and every disk format reader's header parsing (real qemu-img
 * images with mutated headers and footers, opened through the sniff + open entry point).
 *
 * The property, for every input: it is accepted or refused with a documented error class
 * (ManifestError, Ec2Error, S3Error, ImageFormatError), within a time bound, without growing
 * memory beyond a bound. Anything else is a finding.
 *
 * Runs: IMAGING_FUZZ_RUNS per target (default 300); IMAGING_FUZZ_SEED to replay a run. A long
 * run: IMAGING_FUZZ_RUNS=20000 npx jest test/fuzz. Each target logs how many inputs it ran.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import fc from 'fast-check';
import { StaticAccountDirectory } from '../../gateway/accounts';
import { Ec2Error } from '../../gateway/errors';
import { parseQueryRequest, QueryParams, type RawRequest } from '../../gateway/query-request';
import { verifySigV2 } from '../../gateway/sigv2';
import { verifySigV4 } from '../../gateway/sigv4';
import { authenticateS3, S3Error } from '../../cli/s3-auth';
import { buildImportManifest, ManifestError, parseImportManifest, partRanges } from '../../toolkit/bundle/import-manifest';
import { ImageFormatError } from '../../toolkit/errors';
import { openImage } from '../../toolkit/formats/registry';
import { BufferSource } from '../helpers/memory-io';
import { qemuImg, tempDir } from '../helpers/disk-corpus';

const RUNS = Number(process.env.IMAGING_FUZZ_RUNS ?? 300);
const SEED = process.env.IMAGING_FUZZ_SEED === undefined ? undefined : Number(process.env.IMAGING_FUZZ_SEED);
/** One input may take this long (a hang is a finding). */
const PER_INPUT_MS = 2000;
/** One input may grow external + array-buffer memory by this much. */
const MEMORY_BOUND = 256 * 1024 * 1024;

const ran: Record<string, number> = {};
afterAll(() => {
  // The figures the issue asks for: how many inputs each target ran.
  console.log(`fuzz inputs run (IMAGING_FUZZ_RUNS=${RUNS}${SEED === undefined ? '' : `, seed ${SEED}`}): ${JSON.stringify(ran)}`);
});

type Documented = abstract new (...args: never[]) => Error;

/** Runs one input under the property; throws (a finding) on anything undocumented. */
async function check(target: string, documented: Documented[], run: () => unknown | Promise<unknown>): Promise<void> {
  ran[target] = (ran[target] ?? 0) + 1;
  const before = process.memoryUsage();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(run),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${target}: no answer within ${PER_INPUT_MS} ms (a hang)`)), PER_INPUT_MS);
      }),
    ]);
  } catch (err) {
    if (!documented.some((cls) => err instanceof cls)) throw err;
  } finally {
    clearTimeout(timer);
  }
  const after = process.memoryUsage();
  const grew = after.arrayBuffers + after.external - (before.arrayBuffers + before.external);
  if (grew > MEMORY_BOUND) throw new Error(`${target}: one input grew memory by ${grew} bytes`);
}

const params = (extra: Partial<fc.Parameters<unknown>> = {}) => ({ numRuns: RUNS, seed: SEED, ...extra }) as fc.Parameters<unknown>;

/** Text that is likely to matter to a parser: its own vocabulary, separators and odd characters. */
const tokenText = (vocabulary: string[]) =>
  fc.array(fc.oneof(fc.constantFrom(...vocabulary), fc.string({ maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 4 })), { maxLength: 24 }).map((p) => p.join(''));

describe('import manifest parser', () => {
  const xmlVocabulary = ['<manifest>', '</manifest>', '<import>', '</import>', '<parts count="1">', '</parts>', '<part index="0">', '</part>',
    '<byte-range start="0" end="9"/>', '<size>', '</size>', '<volume-size>', '</volume-size>', '<file-format>', '</file-format>', 'RAW', 'VMDK',
    '<version>2010-11-15</version>', '<key>', '</key>', '<get-url>', '</get-url>', '<head-url>', '</head-url>', '<delete-url>', '</delete-url>',
    '<!DOCTYPE x>', '<!ENTITY a "b">', '&amp;', '&lt;', '&#x10FFFF;', '&#0;', '<![CDATA[', ']]>', '<xi:include href="file:///etc/passwd"/>', '<?xml version="1.0"?>',
    '99999999999999999', '-1', '0', '1e3', '\u0000', '"', "'", '<', '>', '/', '='];

  test('arbitrary text made of manifest vocabulary', async () => {
    await fc.assert(fc.asyncProperty(tokenText(xmlVocabulary), (xml) => check('manifest:text', [ManifestError], () => parseImportManifest(xml))), params());
  });

  test('well-formed manifests with hostile field values', async () => {
    const value = fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('', '0', '-1', '18446744073709551616', '1e309', 'NaN', '<x/>', '&amp;'));
    const manifest = fc.record({
      size: fc.oneof(fc.integer({ min: 0, max: 2 ** 40 }).map(String), value),
      volume: fc.oneof(fc.integer({ min: 0, max: 20000 }).map(String), value),
      format: fc.oneof(fc.constantFrom('RAW', 'VMDK', 'VHD', 'raw', 'QCOW2'), value),
      parts: fc.array(fc.record({ index: fc.oneof(fc.nat(20).map(String), value), start: fc.oneof(fc.nat(2 ** 20).map(String), value), end: fc.oneof(fc.nat(2 ** 20).map(String), value), url: value }), { maxLength: 20 }),
      count: fc.option(fc.oneof(fc.nat(30).map(String), value)),
    });
    await fc.assert(
      fc.asyncProperty(manifest, (m) => {
        const esc = (s: string) => s.replace(/&(?!amp;)/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
        const parts = m.parts
          .map((p) => `<part index="${esc(p.index)}"><byte-range start="${esc(p.start)}" end="${esc(p.end)}"/><key>k</key><head-url>${esc(p.url)}</head-url><get-url>${esc(p.url)}</get-url></part>`)
          .join('');
        const xml = `<manifest><version>2010-11-15</version><file-format>${esc(m.format)}</file-format><import><size>${esc(m.size)}</size><volume-size>${esc(m.volume)}</volume-size>` +
          `<parts${m.count === null ? '' : ` count="${esc(m.count)}"`}>${parts}</parts></import></manifest>`;
        return check('manifest:fields', [ManifestError], () => parseImportManifest(xml));
      }),
      params(),
    );
  });

  test('what buildImportManifest writes parses back to the same parts', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 40 }), fc.integer({ min: 1, max: 2 ** 30 }), fc.string({ maxLength: 40 }), (size, partSize, url) =>
        check('manifest:round-trip', [], () => {
          fc.pre(Math.ceil(size / partSize) <= 200);
          const parts = partRanges(size, partSize).map((r) => ({ ...r, key: `k${r.index}`, headUrl: `http://h/${url}`, getUrl: `http://g/${url}` }));
          const m = { version: '2010-11-15', fileFormat: 'RAW' as const, size, volumeSizeGiB: 1, parts };
          // The tiling is what round-trips here; the minimum part size is a policy with its own tests.
          const back = parseImportManifest(buildImportManifest(m), { minPartBytes: 1 });
          expect(back.parts.map((p) => [p.start, p.end])).toEqual(parts.map((p) => [p.start, p.end]));
        }),
      ),
      params({ numRuns: Math.max(20, Math.floor(RUNS / 3)) }),
    );
  });
});

const SECRET = 'fuzz-secret';
const accounts = new StaticAccountDirectory([{ accountId: '123456789012', accessKeyId: 'AKIDFUZZ', secretAccessKey: SECRET }]);

const queryVocabulary = ['Action=', 'DescribeConversionTasks', 'Version=2016-11-15', 'X-Amz-Algorithm=AWS4-HMAC-SHA256', 'X-Amz-Credential=AKIDFUZZ%2F20260301%2Fus-east-1%2Fec2%2Faws4_request',
  'X-Amz-Date=20260301T120000Z', 'X-Amz-Date=20261399T999999Z', 'X-Amz-SignedHeaders=host', 'X-Amz-Signature=00', 'X-Amz-Expires=300', 'X-Amz-Expires=99999999999999999999',
  'SignatureVersion=2', 'SignatureMethod=HmacSHA256', 'AWSAccessKeyId=AKIDFUZZ', 'Signature=abc%3D', 'Timestamp=2026-03-01T12:00:00Z', 'Expires=2099-01-01T00:00:00Z',
  'AWSAccessKeyId=', 'Expires=4102444800', 'Signature=', '&', '=', '%', '%zz', '%FF', '+', '%2B', '%20', 'a.1=', 'ConversionTaskId.1=import-vol-00000000', '\u0000', '\uD800'];

const rawRequest = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'OPTIONS', 'get', ''),
  path: fc.oneof(fc.constantFrom('/', '/bucket/key', '/a/../b', '//', '/%zz', '/bucket/%2e%2e/x'), fc.string({ maxLength: 20 })),
  rawQuery: tokenText(queryVocabulary),
  body: tokenText(queryVocabulary),
  authorization: fc.option(
    tokenText(['AWS4-HMAC-SHA256 ', 'AWS ', 'AWS AKIDFUZZ:', 'Credential=', 'AKIDFUZZ/20260301/us-east-1/ec2/aws4_request', 'AKIDFUZZ/20260301/us-east-1/s3/aws4_request', ', ', 'SignedHeaders=', 'host;x-amz-date', 'host', 'Signature=', '0123abcd', '/', ';', '=', ',']),
  ),
  amzDate: fc.option(fc.oneof(fc.constantFrom('20260301T120000Z', '20261399T999999Z', '00000000T000000Z', ''), fc.string({ maxLength: 20 }))),
  date: fc.option(fc.oneof(fc.constantFrom('Sun, 01 Mar 2026 12:00:00 GMT', 'yesterday', ''), fc.string({ maxLength: 30 }))),
  sha: fc.option(fc.oneof(fc.constantFrom('UNSIGNED-PAYLOAD', 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'), fc.string({ maxLength: 70 }))),
  contentType: fc.option(fc.constantFrom('application/x-www-form-urlencoded', 'text/xml', 'application/x-www-form-urlencoded; charset=utf-8', '')),
});

function toRaw(r: typeof rawRequest extends fc.Arbitrary<infer T> ? T : never): RawRequest {
  const headers: Record<string, string> = { host: 'ec2.fuzz.test:8773' };
  if (r.authorization !== null) headers.authorization = r.authorization;
  if (r.amzDate !== null) headers['x-amz-date'] = r.amzDate;
  if (r.date !== null) headers.date = r.date;
  if (r.sha !== null) headers['x-amz-content-sha256'] = r.sha;
  if (r.contentType !== null) headers['content-type'] = r.contentType;
  return { method: r.method, path: r.path, rawQuery: r.rawQuery, headers, body: Buffer.from(r.body) };
}

describe('EC2 query request parsing and signature verification', () => {
  const now = new Date('2026-03-01T12:00:00Z');

  test('parseQueryRequest, then the verifier authenticate() would pick', async () => {
    await fc.assert(
      fc.asyncProperty(rawRequest, (r) =>
        check('query+sigv4/sigv2', [Ec2Error], async () => {
          const raw = toRaw(r);
          const request = parseQueryRequest(raw);
          if (raw.headers.authorization !== undefined || /X-Amz-Algorithm/.test(raw.rawQuery)) await verifySigV4(raw, accounts, { now });
          else await verifySigV2(raw, request.params, accounts, { now });
        }),
      ),
      params(),
    );
  });

  test('verifySigV4 directly (no parser in front)', async () => {
    await fc.assert(fc.asyncProperty(rawRequest, (r) => check('sigv4', [Ec2Error], () => verifySigV4(toRaw(r), accounts, { now }))), params());
  });

  test('verifySigV2 directly, with arbitrary parameter maps', async () => {
    const param = fc.tuple(fc.constantFrom('AWSAccessKeyId', 'SignatureVersion', 'SignatureMethod', 'Signature', 'Timestamp', 'Expires', 'Action', 'X'), fc.string({ maxLength: 40 }));
    await fc.assert(
      fc.asyncProperty(rawRequest, fc.uniqueArray(param, { selector: ([name]) => name, maxLength: 8 }), (r, entries) =>
        check('sigv2', [Ec2Error], () => verifySigV2(toRaw(r), new QueryParams(entries), accounts, { now })),
      ),
      params(),
    );
  });
});

describe('embedded S3 authentication', () => {
  test('authenticateS3 on arbitrary requests', async () => {
    const lookup = (id: string) => (id === 'AKIDFUZZ' ? { accountId: '123456789012', secretAccessKey: SECRET } : undefined);
    await fc.assert(fc.asyncProperty(rawRequest, (r) => check('s3-auth', [S3Error], () => authenticateS3({ ...toRaw(r), body: Buffer.alloc(0) }, lookup, new Date('2026-03-01T12:00:00Z')))), params());
  });
});

describe('disk format readers: header parsing', () => {
  const corpus: Record<string, Buffer> = {};
  beforeAll(() => {
    const dir = tempDir('fuzz-formats-');
    for (const [name, args] of Object.entries({
      qcow2: ['-f', 'qcow2'],
      vmdk: ['-f', 'vmdk', '-o', 'subformat=monolithicSparse'],
      'vmdk-stream': ['-f', 'vmdk', '-o', 'subformat=streamOptimized'],
      vhd: ['-f', 'vpc', '-o', 'subformat=dynamic'],
      'vhd-fixed': ['-f', 'vpc', '-o', 'subformat=fixed'],
      vhdx: ['-f', 'vhdx'],
    })) {
      const path = join(dir, `${name}.img`);
      qemuImg('create', ...args, path, '4M');
      corpus[name] = readFileSync(path);
    }
  });

  /** Byte changes within the regions readers parse: the first 64 KiB and the last 512 bytes. */
  const mutation = fc.record({
    edits: fc.array(fc.record({ where: fc.double({ min: 0, max: 1, noNaN: true }), tail: fc.boolean(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }), { minLength: 1, maxLength: 12 }),
    truncate: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { freq: 4 }),
  });

  function mutate(image: Buffer, m: { edits: { where: number; tail: boolean; bytes: Uint8Array }[]; truncate: number | null }): Buffer {
    const out = Buffer.from(image);
    for (const e of m.edits) {
      const span = e.tail ? Math.min(512, out.length) : Math.min(64 * 1024, out.length);
      const base = e.tail ? out.length - span : 0;
      const at = base + Math.floor(e.where * (span - 1));
      out.set(e.bytes.subarray(0, out.length - at), at);
    }
    return m.truncate === null ? out : out.subarray(0, Math.floor(m.truncate * out.length));
  }

  test.each(['qcow2', 'vmdk', 'vmdk-stream', 'vhd', 'vhd-fixed', 'vhdx'])('%s with mutated header bytes: sniff, open, and walk the block map', async (name) => {
    await fc.assert(
      fc.asyncProperty(mutation, (m) =>
        check(`format:${name}`, [ImageFormatError], async () => {
          const reader = await openImage(new BufferSource(mutate(corpus[name], m), `${name}.img`), { maxVirtualSize: 2 ** 40 });
          try {
            let extents = 0;
            for await (const extent of reader.blockMap()) if (extent && ++extents > 100_000) break;
          } finally {
            await reader.close();
          }
        }),
      ),
      params({ numRuns: Math.max(50, Math.floor(RUNS / 2)) }),
    );
  });
});
