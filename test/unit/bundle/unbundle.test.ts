/**
 * EC2 bundles made by openssl + gzip + tar (as euca-bundle-image makes them) and by our own
 * bundleImage: parsed, signature-checked, decrypted and unpacked byte for byte; each kind of
 * tampering refused with its own message.
 */
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import { readFileSync, writeFileSync, openSync, writeSync, closeSync, createReadStream } from 'fs';
import { join } from 'path';
import { parseBundleManifest, verifyBundleSignature, signatureRefusal, type BundleManifest } from '../../../toolkit/bundle/bundle-manifest';
import { unwrapBundleKey } from '../../../toolkit/bundle/bundle-keys';
import { unbundle } from '../../../toolkit/bundle/unbundle';
import { bundleImage } from '../../../toolkit/bundle/bundle-writer';
import { ManifestError } from '../../../toolkit/bundle/import-manifest';
import { ImageFormatError } from '../../../toolkit/errors';
import type { MemberOutput } from '../../../toolkit/bundle/tar-member-stream';
import { seededBytes, tempDir } from '../../helpers/disk-corpus';
import { makeKeyPair, makeOpensslBundle, type KeyPair } from '../../helpers/euca-bundle';

const MiB = 1024 * 1024;

/** Collects the image in memory (small images) while counting zero runs separately. */
class CollectingOutput implements MemberOutput {
  chunks: Buffer[] = [];
  async write(chunk: Buffer) {
    this.chunks.push(Buffer.from(chunk));
  }
  async writeZeros(length: number) {
    this.chunks.push(Buffer.alloc(length));
  }
  bytes() {
    return Buffer.concat(this.chunks);
  }
}

function partReader(dir: string) {
  return async (part: { filename: string }) => readFileSync(join(dir, part.filename));
}

let dir: string;
let cloud: KeyPair;
let user: KeyPair;
let other: KeyPair;
let image: Buffer;
let imagePath: string;

beforeAll(() => {
  dir = tempDir('bundle-test-');
  cloud = makeKeyPair(dir, 'cloud');
  user = makeKeyPair(dir, 'user');
  other = makeKeyPair(dir, 'other');
  // Random, compressible and zero regions, of a size that is no multiple of anything.
  image = Buffer.concat([seededBytes(MiB + 333, 7), Buffer.alloc(2 * MiB), Buffer.from('a'.repeat(700_000)), seededBytes(4321, 9)]);
  imagePath = join(dir, 'disk.img');
  writeFileSync(imagePath, image);
});

async function unbundleFiles(manifestXml: string, cloudKey = cloud.keyPem) {
  const manifest = parseBundleManifest(manifestXml);
  const cipher = unwrapBundleKey(manifest, cloudKey);
  const out = new CollectingOutput();
  const result = await unbundle({ manifest, cipher, readPart: partReader(dir), output: out });
  return { manifest, result, bytes: out.bytes() };
}

test('a bundle made by openssl, gzip and tar unbundles to the image, byte for byte', async () => {
  const made = makeOpensslBundle({ dir, imagePath, prefix: 'plain', partSize: MiB, cloud, user });
  expect(made.partPaths.length).toBeGreaterThan(1);
  const { manifest, result, bytes } = await unbundleFiles(made.manifestXml);
  expect(verifyBundleSignature(manifest, [other.certPem, user.certPem])).toEqual({ ok: true, certificate: user.certPem });
  expect(manifest.blockDeviceMappings).toEqual([{ virtual: 'ami', device: 'sda1' }, { virtual: 'root', device: '/dev/sda1' }]);
  expect(result).toMatchObject({ name: 'disk.img', size: image.length, sparse: false, bundledBytes: made.ciphertextBytes });
  expect(bytes.equals(image)).toBe(true);
});

test('a ciphertext that fills its parts exactly ends with an empty part, and unbundles', async () => {
  const made = makeOpensslBundle({ dir, imagePath, prefix: 'exact', partSize: 0, partSizeFor: (n) => n / 2, cloud, user });
  expect(made.ciphertextBytes % made.partSize).toBe(0);
  expect(made.partPaths).toHaveLength(3);
  expect(readFileSync(made.partPaths[2]).length).toBe(0);
  const { bytes } = await unbundleFiles(made.manifestXml);
  expect(bytes.equals(image)).toBe(true);
});

test('a sparse image over 8 GiB (GNU sparse member, base-256 real size) unbundles with its holes as zero runs', async () => {
  const sparsePath = join(dir, 'big.img');
  const size = 9 * 1024 * MiB + 4096;
  execFileSync('truncate', ['-s', String(size), sparsePath]);
  const head = seededBytes(70_000, 3);
  const far = seededBytes(5000, 4);
  const farOffset = 8.5 * 1024 * MiB;
  const fd = openSync(sparsePath, 'r+');
  writeSync(fd, head, 0, head.length, 0);
  writeSync(fd, far, 0, far.length, farOffset);
  closeSync(fd);
  const made = makeOpensslBundle({ dir, imagePath: sparsePath, prefix: 'sparse', partSize: 64 * 1024, cloud, user, sparse: true });
  // The tar header's real-size field holds 9 GiB, beyond octal's 8 GiB: GNU writes it base-256.
  const manifest = parseBundleManifest(made.manifestXml);
  const cipher = unwrapBundleKey(manifest, cloud.keyPem);
  const writes: { at: number; bytes: Buffer }[] = [];
  let at = 0;
  let zeros = 0;
  const output: MemberOutput = {
    async write(chunk) {
      writes.push({ at, bytes: Buffer.from(chunk) });
      at += chunk.length;
    },
    async writeZeros(length) {
      zeros += length;
      at += length;
    },
  };
  const result = await unbundle({ manifest, cipher, readPart: partReader(dir), output });
  expect(result).toMatchObject({ size, sparse: true });
  expect(at).toBe(size);
  expect(zeros).toBeGreaterThan(9 * 1024 * MiB - MiB);
  const readBack = (offset: number, length: number) => {
    const out = Buffer.alloc(length);
    for (const w of writes) {
      const from = Math.max(offset, w.at);
      const to = Math.min(offset + length, w.at + w.bytes.length);
      if (from < to) w.bytes.copy(out, from - offset, from - w.at, to - w.at);
    }
    return out;
  };
  expect(readBack(0, head.length).equals(head)).toBe(true);
  expect(readBack(farOffset, far.length).equals(far)).toBe(true);
});

test('a bundle made by bundleImage unpacks with openssl, gzip and tar, and with unbundle', async () => {
  const parts = new Map<string, Buffer>();
  const made = await bundleImage({
    name: 'disk.img',
    prefix: 'ours',
    image: createReadStream(imagePath, { highWaterMark: 100_000 }),
    size: image.length,
    partSize: MiB,
    cloudCertificate: cloud.certPem,
    userCertificate: user.certPem,
    signingKey: user.keyPem,
    user: '123456789012',
    writePart: async (name, bytes) => {
      parts.set(name, Buffer.from(bytes));
      writeFileSync(join(dir, name), bytes);
    },
  });
  writeFileSync(join(dir, made.manifestName), made.manifestXml);
  const manifest = parseBundleManifest(made.manifestXml);
  expect(verifyBundleSignature(manifest, [user.certPem]).ok).toBe(true);
  // openssl, with the key and IV unwrapped by openssl too.
  const unwrap = (hex: string) =>
    execFileSync('bash', ['-c', 'echo -n "$H" | xxd -r -p | openssl pkeyutl -decrypt -inkey "$K"'], { env: { ...process.env, H: hex, K: cloud.keyPath } }).toString();
  const keyHex = unwrap(manifest.ec2EncryptedKey);
  const ivHex = unwrap(manifest.ec2EncryptedIv);
  const partFiles = manifest.parts.map((p) => join(dir, p.filename));
  const viaOpenssl = execFileSync('bash', ['-o', 'pipefail', '-c', 'cat "$@" | openssl enc -d -aes-128-cbc -K "$KEY" -iv "$IV" | gzip -dc | tar -xOf -', '_', ...partFiles], {
    env: { ...process.env, KEY: keyHex, IV: ivHex },
    maxBuffer: 64 * MiB,
  });
  expect(createHash('sha256').update(viaOpenssl).digest('hex')).toBe(createHash('sha256').update(image).digest('hex'));
  const { bytes } = await unbundleFiles(made.manifestXml);
  expect(bytes.equals(image)).toBe(true);
});

describe('refusals', () => {
  let made: ReturnType<typeof makeOpensslBundle>;
  beforeAll(() => {
    made = makeOpensslBundle({ dir, imagePath, prefix: 'refuse', partSize: MiB, cloud, user });
  });

  test('a tampered part is refused by its SHA-1, naming the part', async () => {
    const copy = join(dir, 'refuse-tampered');
    const bytes = readFileSync(made.partPaths[1]);
    bytes[100] ^= 1;
    writeFileSync(copy, bytes);
    const manifest = parseBundleManifest(made.manifestXml);
    const cipher = unwrapBundleKey(manifest, cloud.keyPem);
    const readPart = async (p: { filename: string; index: number }) => readFileSync(p.index === 1 ? copy : join(dir, p.filename));
    const run = unbundle({ manifest, cipher, readPart, output: new CollectingOutput() });
    await expect(run).rejects.toThrow(ImageFormatError);
    await expect(run).rejects.toThrow(/part 1 \(refuse\.part\.01\) has SHA-1 [0-9a-f]{40} but the manifest says/);
  });

  test('a bundle encrypted for another cloud is refused when unwrapping its key', () => {
    const manifest = parseBundleManifest(made.manifestXml);
    expect(() => unwrapBundleKey(manifest, other.keyPem)).toThrow(ManifestError);
    expect(() => unwrapBundleKey(manifest, other.keyPem)).toThrow(/cannot be decrypted with this cloud's key/);
  });

  test('an edited <image> element no longer verifies', () => {
    const edited = made.manifestXml.replace(`<size>${image.length}</size>`, `<size>${image.length + 1}</size>`);
    const verdict = verifyBundleSignature(parseBundleManifest(edited), [user.certPem]);
    expect(verdict).toEqual({ ok: false, reason: 'mismatch' });
    expect(signatureRefusal(verdict as { ok: false; reason: 'mismatch' })).toMatch(/changed after signing/);
  });

  test("a manifest signed with another account's certificate does not verify against this account's", () => {
    const byOther = makeOpensslBundle({ dir, imagePath, prefix: 'other', partSize: MiB, cloud, user, signWith: other });
    expect(verifyBundleSignature(parseBundleManifest(byOther.manifestXml), [user.certPem])).toEqual({ ok: false, reason: 'mismatch' });
  });

  test('an UNSIGNED manifest is reported as unsigned', () => {
    const unsigned = makeOpensslBundle({ dir, imagePath, prefix: 'unsigned', partSize: MiB, cloud, user, signWith: 'UNSIGNED' });
    const manifest: BundleManifest = parseBundleManifest(unsigned.manifestXml);
    expect(manifest.signature).toBeUndefined();
    const verdict = verifyBundleSignature(manifest, [user.certPem]);
    expect(verdict).toEqual({ ok: false, reason: 'unsigned' });
    expect(signatureRefusal(verdict as { ok: false; reason: 'unsigned' })).toMatch(/UNSIGNED/);
  });

  test('a second <image> element (a signature-wrapping attempt) and comments are refused', () => {
    const doubled = made.manifestXml.replace('<signature>', '<image><name>x</name></image><signature>');
    expect(() => parseBundleManifest(doubled)).toThrow(/has 2 <image> elements/);
    const commented = made.manifestXml.replace('<signature>', '<!-- x --><signature>');
    expect(() => parseBundleManifest(commented)).toThrow(/comments/);
  });

  test('a wrong image digest is refused after unpacking', async () => {
    const manifest = { ...parseBundleManifest(made.manifestXml), tarSha1: '0'.repeat(40) };
    const cipher = unwrapBundleKey(manifest, cloud.keyPem);
    await expect(unbundle({ manifest, cipher, readPart: partReader(dir), output: new CollectingOutput() })).rejects.toThrow(/tar stream has SHA-1 [0-9a-f]{40} but the manifest's image digest is 0{40}/);
  });

  test('a declared size that differs from the file in the tar is refused before any byte is written', async () => {
    const manifest = { ...parseBundleManifest(made.manifestXml), size: image.length - 1 };
    const cipher = unwrapBundleKey(manifest, cloud.keyPem);
    const out = new CollectingOutput();
    await expect(unbundle({ manifest, cipher, readPart: partReader(dir), output: out })).rejects.toThrow(/is \d+ bytes but the manifest declares/);
    expect(out.bytes().length).toBe(0);
  });

  test('a key that decrypts to garbage is refused as not gzip or badly padded, never a crash', async () => {
    const manifest = parseBundleManifest(made.manifestXml);
    const cipher = { key: Buffer.alloc(16, 1), iv: Buffer.alloc(16, 2) };
    await expect(unbundle({ manifest, cipher, readPart: partReader(dir), output: new CollectingOutput() })).rejects.toThrow(ImageFormatError);
  });
});
