/**
 * Makes an EC2 image bundle the way ec2-bundle-image and euca-bundle-image do (FORMATS.md §2):
 * tar of one file, SHA-1 of the tar stream, gzip, AES-128-CBC with a fresh key and IV, parts of
 * `partSize` (a trailing empty part when the ciphertext fills its last part exactly), the key and
 * IV wrapped for the cloud and for the user, and an RSA-SHA1 signature over the manifest's
 * machine_configuration and image text. One pass; memory is one part plus stream buffers.
 */
import { createCipheriv, createHash, createPrivateKey, createSign, type KeyLike } from 'crypto';
import { Readable } from 'stream';
import { pipeline } from 'stream/promises';
import { createGzip } from 'zlib';
import { tarFileHeader, tarPadding, TAR_END_BYTES } from './tar';
import { newBundleCipherKey, wrapBundleKeyPart, type BundleCipherKey } from './bundle-keys';
import type { BundleImageType } from './bundle-manifest';

export const DEFAULT_BUNDLE_PART_SIZE = 10 * 1024 * 1024;

export interface BundleImageOptions {
  /** The image file's name in the tar; parts are named `<prefix>.part.NN`. */
  name: string;
  prefix?: string;
  /** The image's bytes, exactly `size` of them. */
  image: AsyncIterable<Buffer>;
  size: number;
  partSize?: number;
  /** Certificate (PEM) of the cloud that will unbundle: it gets the ec2_* key fields. */
  cloudCertificate: KeyLike;
  /** The user's certificate (PEM) for the user_* key fields; defaults to the cloud's. */
  userCertificate?: KeyLike;
  /** The user's private key (PEM) to sign the manifest; without one the manifest says UNSIGNED. */
  signingKey?: KeyLike;
  imageType?: BundleImageType;
  architecture?: string;
  kernelId?: string;
  ramdiskId?: string;
  blockDeviceMappings?: { virtual: string; device: string }[];
  /** The owning account id (the manifest's <user>). */
  user?: string;
  /** Receives each part in order; resolves when it is stored. */
  writePart(filename: string, bytes: Buffer): Promise<void>;
  /** For tests: a fixed key and IV instead of fresh random ones. */
  cipher?: BundleCipherKey;
  onProgress?(done: number, total: number): void;
}

export interface BundleResult {
  manifestName: string;
  manifestXml: string;
  parts: { filename: string; sha1: string; size: number }[];
  tarSha1: string;
  bundledSize: number;
}

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export async function bundleImage(options: BundleImageOptions): Promise<BundleResult> {
  const partSize = options.partSize ?? DEFAULT_BUNDLE_PART_SIZE;
  if (!Number.isSafeInteger(partSize) || partSize < 1) throw new RangeError(`part size must be a positive integer, got ${partSize}`);
  const prefix = options.prefix ?? options.name;
  const cipher = options.cipher ?? newBundleCipherKey();
  const tarHash = createHash('sha1');
  let imageBytes = 0;

  async function* tarStream(): AsyncGenerator<Buffer> {
    const header = tarFileHeader(options.name, options.size);
    tarHash.update(header);
    yield header;
    for await (const chunk of options.image) {
      imageBytes += chunk.length;
      if (imageBytes > options.size) throw new Error(`the image gave more than the ${options.size} bytes announced`);
      tarHash.update(chunk);
      options.onProgress?.(imageBytes, options.size);
      yield chunk;
    }
    if (imageBytes !== options.size) throw new Error(`the image gave ${imageBytes} bytes, not the ${options.size} announced`);
    const tail = Buffer.alloc(tarPadding(options.size) + TAR_END_BYTES);
    tarHash.update(tail);
    yield tail;
  }

  const parts: BundleResult['parts'] = [];
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let bundledSize = 0;
  const emitPart = async (bytes: Buffer) => {
    const filename = `${prefix}.part.${String(parts.length).padStart(2, '0')}`;
    parts.push({ filename, sha1: createHash('sha1').update(bytes).digest('hex'), size: bytes.length });
    bundledSize += bytes.length;
    await options.writePart(filename, bytes);
  };
  await pipeline(Readable.from(tarStream()), createGzip(), createCipheriv('aes-128-cbc', cipher.key, cipher.iv), async (ciphertext: AsyncIterable<Buffer>) => {
    for await (const chunk of ciphertext) {
      let at = 0;
      while (at < chunk.length) {
        const take = Math.min(partSize - pendingBytes, chunk.length - at);
        pending.push(chunk.subarray(at, at + take));
        pendingBytes += take;
        at += take;
        if (pendingBytes === partSize) {
          const whole = Buffer.concat(pending, pendingBytes);
          pending = [];
          pendingBytes = 0;
          await emitPart(whole);
        }
      }
    }
  });
  // A ciphertext that fills its last part exactly still ends with a part: an empty one.
  await emitPart(Buffer.concat(pending, pendingBytes));

  const cloudKey = wrapBundleKeyPart(cipher.key, options.cloudCertificate);
  const cloudIv = wrapBundleKeyPart(cipher.iv, options.cloudCertificate);
  const userCert = options.userCertificate ?? options.cloudCertificate;
  const mappings = options.blockDeviceMappings ?? [];
  const machineConfiguration =
    '<machine_configuration>' +
    `<architecture>${xmlEscape(options.architecture ?? 'x86_64')}</architecture>` +
    (mappings.length
      ? `<block_device_mapping>${mappings.map((m) => `<mapping><virtual>${xmlEscape(m.virtual)}</virtual><device>${xmlEscape(m.device)}</device></mapping>`).join('')}</block_device_mapping>`
      : '') +
    (options.kernelId ? `<kernel_id>${xmlEscape(options.kernelId)}</kernel_id>` : '') +
    (options.ramdiskId ? `<ramdisk_id>${xmlEscape(options.ramdiskId)}</ramdisk_id>` : '') +
    '</machine_configuration>';
  const tarSha1 = tarHash.digest('hex');
  const image =
    '<image>' +
    `<name>${xmlEscape(options.name)}</name>` +
    `<user>${xmlEscape(options.user ?? '')}</user>` +
    `<type>${options.imageType ?? 'machine'}</type>` +
    `<digest algorithm="SHA1">${tarSha1}</digest>` +
    `<size>${options.size}</size>` +
    `<bundled_size>${bundledSize}</bundled_size>` +
    `<ec2_encrypted_key algorithm="AES-128-CBC">${cloudKey}</ec2_encrypted_key>` +
    `<user_encrypted_key algorithm="AES-128-CBC">${wrapBundleKeyPart(cipher.key, userCert)}</user_encrypted_key>` +
    `<ec2_encrypted_iv>${cloudIv}</ec2_encrypted_iv>` +
    `<user_encrypted_iv>${wrapBundleKeyPart(cipher.iv, userCert)}</user_encrypted_iv>` +
    `<parts count="${parts.length}">${parts.map((p, i) => `<part index="${i}"><filename>${xmlEscape(p.filename)}</filename><digest algorithm="SHA1">${p.sha1}</digest></part>`).join('')}</parts>` +
    '</image>';
  const signature = options.signingKey
    ? createSign('RSA-SHA1').update(machineConfiguration + image, 'utf8').sign(createPrivateKey(options.signingKey as string | Buffer), 'hex')
    : 'UNSIGNED';
  const manifestXml =
    '<?xml version="1.0" ?>' +
    '<manifest><version>2007-10-10</version><bundler><name>imaging</name><version>1.0</version><release>1</release></bundler>' +
    machineConfiguration +
    image +
    `<signature>${signature}</signature></manifest>\n`;
  return { manifestName: `${prefix}.manifest.xml`, manifestXml, parts, tarSha1, bundledSize };
}
