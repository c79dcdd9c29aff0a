/**
 * The local half of the bundle tools: `imaging bundle-image` (a file → parts and a signed
 * manifest in a directory, as euca-bundle-image makes them) and `imaging unbundle` (a bundle
 * directory → the image file, every check the service makes). No network.
 */
import { createReadStream, mkdirSync, readFileSync, statSync, writeFileSync } from 'fs';
import { open } from 'fs/promises';
import { basename, dirname, join } from 'path';
import { SingleBar, Presets } from 'cli-progress';
import { bundleImage, DEFAULT_BUNDLE_PART_SIZE } from '../../toolkit/bundle/bundle-writer';
import { parseBundleManifest, signatureRefusal, verifyBundleSignature } from '../../toolkit/bundle/bundle-manifest';
import { unwrapBundleKey } from '../../toolkit/bundle/bundle-keys';
import { unbundle } from '../../toolkit/bundle/unbundle';
import type { BundleImageType } from '../../toolkit/bundle/bundle-manifest';

const MiB = 1024 * 1024;

function progressBar(enabled: boolean, label: string): SingleBar | undefined {
  return enabled ? new SingleBar({ format: `${label} |{bar}| {percentage}% {value}/{total} MiB`, stopOnComplete: true }, Presets.shades_classic) : undefined;
}

export interface BundleImageFlags {
  /** The cloud's certificate (`imaging cloud-cert`): bundle keys are wrapped for it. */
  cloudCert: string;
  /** The user's certificate and private key: user_* key fields, and the signature. */
  cert?: string;
  privateKey?: string;
  destination: string;
  prefix?: string;
  partSizeMiB: number;
  type: BundleImageType;
  architecture: string;
  kernelId?: string;
  ramdiskId?: string;
  user?: string;
  progress: boolean;
}

export async function bundleImageFile(file: string, o: BundleImageFlags): Promise<{ manifestPath: string; parts: number; bundledSize: number }> {
  const size = statSync(file).size;
  mkdirSync(o.destination, { recursive: true });
  const bar = progressBar(o.progress, 'bundling');
  bar?.start(Math.ceil(size / MiB), 0);
  const result = await bundleImage({
    name: basename(file),
    prefix: o.prefix ?? basename(file),
    image: createReadStream(file, { highWaterMark: MiB }),
    size,
    partSize: Math.round(o.partSizeMiB * MiB) || DEFAULT_BUNDLE_PART_SIZE,
    cloudCertificate: readFileSync(o.cloudCert, 'utf8'),
    ...(o.cert ? { userCertificate: readFileSync(o.cert, 'utf8') } : {}),
    ...(o.privateKey ? { signingKey: readFileSync(o.privateKey, 'utf8') } : {}),
    imageType: o.type,
    architecture: o.architecture,
    kernelId: o.kernelId,
    ramdiskId: o.ramdiskId,
    user: o.user,
    writePart: async (filename, bytes) => writeFileSync(join(o.destination, filename), bytes),
    onProgress: (done) => bar?.update(Math.floor(done / MiB)),
  });
  bar?.update(Math.ceil(size / MiB));
  bar?.stop();
  const manifestPath = join(o.destination, result.manifestName);
  writeFileSync(manifestPath, result.manifestXml);
  return { manifestPath, parts: result.parts.length, bundledSize: result.bundledSize };
}

export interface UnbundleFlags {
  /** A private key that can unwrap the key: the cloud's (ec2_* fields) or the user's (user_* fields). */
  privateKey: string;
  /** Verify the signature against this certificate as well. */
  cert?: string;
  source?: string;
  destination: string;
  progress: boolean;
}

export async function unbundleFiles(manifestPath: string, o: UnbundleFlags): Promise<{ path: string; size: number; signature: string }> {
  const manifest = parseBundleManifest(readFileSync(manifestPath));
  let signature = manifest.signature ? 'not checked (no --cert)' : 'UNSIGNED';
  if (o.cert) {
    const verdict = verifyBundleSignature(manifest, [readFileSync(o.cert, 'utf8')]);
    if (!verdict.ok) throw new Error(signatureRefusal(verdict));
    signature = 'verified';
  }
  const key = readFileSync(o.privateKey, 'utf8');
  let cipher;
  try {
    cipher = unwrapBundleKey(manifest, key);
  } catch (err) {
    if (!manifest.userEncryptedKey || !manifest.userEncryptedIv) throw err;
    cipher = unwrapBundleKey({ ec2EncryptedKey: manifest.userEncryptedKey, ec2EncryptedIv: manifest.userEncryptedIv }, key);
  }
  const source = o.source ?? dirname(manifestPath);
  mkdirSync(o.destination, { recursive: true });
  // Named as the manifest names the image (its base name only: never a path from the bundle).
  const path = join(o.destination, basename(manifest.name));
  const out = await open(path, 'w');
  const bar = progressBar(o.progress, 'unbundling');
  bar?.start(Math.ceil(manifest.size / MiB), 0);
  let position = 0;
  try {
    await unbundle({
      manifest,
      cipher,
      readPart: async (part) => readFileSync(join(source, part.filename)),
      output: {
        write: async (chunk) => {
          await out.write(chunk, 0, chunk.length, position);
          position += chunk.length;
        },
        writeZeros: async (length) => {
          position += length; // a hole: the file is extended (sparse) below
        },
      },
      onProgress: (done) => bar?.update(Math.floor(done / MiB)),
    });
    await out.truncate(position);
  } finally {
    bar?.stop();
    await out.close();
  }
  return { path, size: position, signature };
}
