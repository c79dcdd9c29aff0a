/**
 * Unbundles an EC2 image bundle into a sink in one pass, with no scratch copy: parts are fetched
 * in order with bounded read-ahead, each part's SHA-1 is checked before any of its bytes is
 * decrypted, then AES-128-CBC, gunzip and the tar stream's one member flow into the sink. The
 * tar stream's SHA-1 and the unbundled size are checked at the end; a caller aborts the sink on
 * any error, so a refused bundle leaves nothing behind. Memory: the parts in flight plus stream
 * buffers, whatever the image size. FORMATS.md §2 describes the producer side.
 */
import { createDecipheriv, createHash } from 'crypto';
import { Readable } from 'stream';
import { pipeline } from 'stream/promises';
import { createGunzip } from 'zlib';
import { ImageFormatError } from '../errors';
import { ConversionCancelledError } from '../convert/cancellation';
import type { BundleManifest, BundlePart } from './bundle-manifest';
import type { BundleCipherKey } from './bundle-keys';
import { TarMemberStream, type MemberOutput } from './tar-member-stream';

export interface UnbundleOptions {
  /** What unbundling checks against: the parts, their digests, the tar stream's digest and the image's size. */
  manifest: Pick<BundleManifest, 'size' | 'tarSha1' | 'parts'>;
  cipher: BundleCipherKey;
  /** The bytes of one part (the caller bounds part sizes before reading). */
  readPart(part: BundlePart): Promise<Buffer>;
  /** Where the image's bytes go, in order; holes of sparse members as zero runs. */
  output: MemberOutput;
  /** Parts fetched ahead of the one being decrypted (default 2). */
  readAhead?: number;
  /** Refuse an image larger than this, before writing any of it. */
  maxImageBytes?: number;
  signal?: AbortSignal;
  /** Called as bytes come out: image bytes written so far, of the manifest's size. */
  onProgress?(written: number, total: number): void;
}

export interface UnbundleResult {
  /** The image file's name inside the bundle. */
  name: string;
  size: number;
  sparse: boolean;
  /** Ciphertext bytes read (all parts). */
  bundledBytes: number;
}

/**
 * gunzip's output chunk: 1 MiB rather than 256 KiB means a quarter of the chunks, tar pushes and
 * sink writes; measured (npm run bench:unbundle's S3 worker, image store write replaced by a
 * discard sink) ~0.45 s less CPU per 512 MiB image, with peak RSS within a few MiB.
 */
const INFLATE_CHUNK = 1024 * 1024;

export async function unbundle(options: UnbundleOptions): Promise<UnbundleResult> {
  const { manifest, cipher, signal } = options;
  const readAhead = Math.max(1, options.readAhead ?? 2);
  const maxImageBytes = options.maxImageBytes ?? Number.MAX_SAFE_INTEGER;
  if (manifest.size > maxImageBytes) {
    throw new ImageFormatError('bundle-size-bounded', `the bundle's image is ${manifest.size} bytes, over the limit of ${maxImageBytes}`);
  }

  let written = 0;
  const counted: MemberOutput = {
    write: async (chunk) => {
      written += chunk.length;
      if (written > manifest.size) throw overflow();
      await options.output.write(chunk);
      options.onProgress?.(written, manifest.size);
    },
    writeZeros: async (length) => {
      written += length;
      if (written > manifest.size) throw overflow();
      await options.output.writeZeros(length);
      options.onProgress?.(written, manifest.size);
    },
  };
  const overflow = () => new ImageFormatError('bundle-size', `the bundle unpacks to more than the ${manifest.size} bytes its manifest declares`);
  const tar = new TarMemberStream(counted, (member) => {
    if (member.size !== manifest.size) {
      throw new ImageFormatError('bundle-size', `the bundle's file "${printable(member.name)}" is ${member.size} bytes but the manifest declares ${manifest.size}`);
    }
  });

  let bundledBytes = 0;
  const decipher = createDecipheriv('aes-128-cbc', cipher.key, cipher.iv);
  async function* plaintext(): AsyncGenerator<Buffer> {
    const parts = manifest.parts;
    const inflight: Promise<Buffer>[] = [];
    let next = 0;
    const fill = () => {
      while (inflight.length < readAhead && next < parts.length) {
        const fetching = options.readPart(parts[next++]);
        fetching.catch(() => undefined); // awaited in order below; a later failure must not go unhandled meanwhile
        inflight.push(fetching);
      }
    };
    for (const part of parts) {
      if (signal?.aborted) throw new ConversionCancelledError();
      fill();
      const bytes = await inflight.shift()!;
      fill();
      const digest = createHash('sha1').update(bytes).digest('hex');
      if (digest !== part.sha1) {
        throw new ImageFormatError('bundle-part-digest', `part ${part.index} (${part.filename}) has SHA-1 ${digest} but the manifest says ${part.sha1}: the part is damaged or was changed`);
      }
      bundledBytes += bytes.length;
      if (bytes.length > 0) yield decipher.update(bytes);
    }
    let last: Buffer;
    try {
      last = decipher.final();
    } catch {
      throw new ImageFormatError('bundle-decrypt', 'the bundle does not decrypt to well-padded data: its key or IV is wrong for its parts, or a part is missing');
    }
    if (last.length > 0) yield last;
  }

  const tarHash = createHash('sha1');
  const gunzip = createGunzip({ chunkSize: INFLATE_CHUNK });
  // The pipeline may report its own teardown (an AbortError) instead of what stopped it.
  let refusal: unknown;
  try {
    await pipeline(Readable.from(plaintext()), gunzip, async (tarStream: AsyncIterable<Buffer>) => {
      try {
        for await (const chunk of tarStream) {
          if (signal?.aborted) throw new ConversionCancelledError();
          tarHash.update(chunk);
          await tar.push(chunk);
        }
      } catch (err) {
        refusal ??= err;
        throw err;
      }
    });
  } catch (thrown) {
    const err = refusal ?? thrown;
    if (err instanceof ImageFormatError || err instanceof ConversionCancelledError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (code.startsWith('Z_')) {
      throw new ImageFormatError('bundle-gzip', `the bundle's decrypted data is not a valid gzip stream (${(err as Error).message}); its key is wrong or it was not compressed with gzip`);
    }
    throw err;
  }
  const member = tar.end();
  const tarSha1 = tarHash.digest('hex');
  if (tarSha1 !== manifest.tarSha1) {
    throw new ImageFormatError('bundle-digest', `the bundle's tar stream has SHA-1 ${tarSha1} but the manifest's image digest is ${manifest.tarSha1}`);
  }
  if (written !== manifest.size) {
    throw new ImageFormatError('bundle-size', `the bundle unpacks to ${written} bytes but its manifest declares ${manifest.size}`);
  }
  return { name: member.name, size: written, sparse: member.sparse, bundledBytes };
}

function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 100 ? `${clean.slice(0, 100)}...` : clean;
}
