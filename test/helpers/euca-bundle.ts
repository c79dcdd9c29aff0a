/**
 * EC2 image bundles made with openssl, gzip and tar exactly as euca-bundle-image makes them
 * (FORMATS.md §2): GNU tar of one file, SHA-1 of the tar stream, gzip, AES-128-CBC with an
 * explicit key and IV, parts of a fixed size (plus an empty last part when the ciphertext fills
 * its last part exactly), key and IV hex strings wrapped with PKCS#1 v1.5 for the cloud and the
 * user, and an RSA-SHA1 signature over machine_configuration + image as they appear in the file.
 */
import { execFileSync } from 'child_process';
import { readFileSync, statSync, writeFileSync } from 'fs';
import { join } from 'path';

export interface KeyPair {
  keyPath: string;
  certPath: string;
  certPem: string;
  keyPem: string;
}

/** A self-signed RSA certificate and its key, made by openssl. */
export function makeKeyPair(dir: string, name: string): KeyPair {
  const keyPath = join(dir, `${name}-key.pem`);
  const certPath = join(dir, `${name}-cert.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-subj', `/CN=${name}`, '-days', '2'], { stdio: 'ignore' });
  return { keyPath, certPath, certPem: readFileSync(certPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8') };
}

export interface OpensslBundleOptions {
  dir: string;
  /** The image file to bundle (its base name becomes the tar member's name). */
  imagePath: string;
  prefix: string;
  partSize: number;
  cloud: KeyPair;
  user: KeyPair;
  /** Sign with this key instead of the user's; 'UNSIGNED' writes no signature. */
  signWith?: KeyPair | 'UNSIGNED';
  /** tar --sparse (GNU 'S' members). */
  sparse?: boolean;
  imageType?: 'machine' | 'kernel' | 'ramdisk';
  kernelId?: string;
  ramdiskId?: string;
  /** Picks the part size from the ciphertext's length (to make it fill its parts exactly). */
  partSizeFor?: (ciphertextBytes: number) => number;
}

export interface OpensslBundle {
  manifestPath: string;
  manifestXml: string;
  partPaths: string[];
  ciphertextBytes: number;
  partSize: number;
  keyHex: string;
  ivHex: string;
}

const sh = (script: string, cwd: string, env: Record<string, string> = {}) =>
  execFileSync('bash', ['-o', 'pipefail', '-c', script], { cwd, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 }).toString();

function wrap(hexText: string, certPath: string, dir: string): string {
  return sh(`printf %s "$V" | openssl pkeyutl -encrypt -certin -inkey "$C" | od -An -v -tx1 | tr -d ' \\n'`, dir, { V: hexText, C: certPath });
}

export function makeOpensslBundle(o: OpensslBundleOptions): OpensslBundle {
  const keyHex = sh('openssl rand -hex 16', o.dir).trim();
  const ivHex = sh('openssl rand -hex 16', o.dir).trim();
  const name = o.imagePath.split('/').pop()!;
  const imageDir = o.imagePath.slice(0, o.imagePath.length - name.length - 1) || '.';
  const ciphertext = join(o.dir, `${o.prefix}.enc`);
  const tarFile = join(o.dir, `${o.prefix}.tar`);
  sh(`tar --format=gnu ${o.sparse ? '-S' : ''} -cf "$TAR" -C "$IMGDIR" "$NAME"`, o.dir, { IMGDIR: imageDir, NAME: name, TAR: tarFile });
  const tarSha1 = sh(`sha1sum "$TAR" | cut -d' ' -f1`, o.dir, { TAR: tarFile }).trim();
  sh(`gzip -c "$TAR" | openssl enc -aes-128-cbc -K "$KEY" -iv "$IV" > "$OUT" && rm "$TAR"`, o.dir, { TAR: tarFile, KEY: keyHex, IV: ivHex, OUT: ciphertext });
  const ciphertextBytes = statSync(ciphertext).size;
  const partSize = o.partSizeFor ? o.partSizeFor(ciphertextBytes) : o.partSize;
  sh(`split -b "$SIZE" -d -a 2 "$IN" "$PREFIX.part."`, o.dir, { SIZE: String(partSize), IN: ciphertext, PREFIX: o.prefix });
  const partPaths: string[] = [];
  for (let i = 0; i * partSize < ciphertextBytes; i++) partPaths.push(join(o.dir, `${o.prefix}.part.${String(i).padStart(2, '0')}`));
  if (ciphertextBytes % partSize === 0) {
    const empty = join(o.dir, `${o.prefix}.part.${String(partPaths.length).padStart(2, '0')}`);
    writeFileSync(empty, Buffer.alloc(0));
    partPaths.push(empty);
  }
  const partsXml = partPaths
    .map((p, i) => {
      const digest = sh(`sha1sum "$P" | cut -d' ' -f1`, o.dir, { P: p }).trim();
      return `<part index="${i}"><filename>${p.split('/').pop()}</filename><digest algorithm="SHA1">${digest}</digest></part>`;
    })
    .join('');
  const size = statSync(o.imagePath).size;
  const machine =
    '<machine_configuration><architecture>x86_64</architecture>' +
    '<block_device_mapping><mapping><virtual>ami</virtual><device>sda1</device></mapping><mapping><virtual>root</virtual><device>/dev/sda1</device></mapping></block_device_mapping>' +
    (o.kernelId ? `<kernel_id>${o.kernelId}</kernel_id>` : '') +
    (o.ramdiskId ? `<ramdisk_id>${o.ramdiskId}</ramdisk_id>` : '') +
    '</machine_configuration>';
  const image =
    `<image><name>${name}</name><user>000000000000</user><type>${o.imageType ?? 'machine'}</type>` +
    `<digest algorithm="SHA1">${tarSha1}</digest><size>${size}</size><bundled_size>${ciphertextBytes}</bundled_size>` +
    `<ec2_encrypted_key algorithm="AES-128-CBC">${wrap(keyHex, o.cloud.certPath, o.dir)}</ec2_encrypted_key>` +
    `<user_encrypted_key algorithm="AES-128-CBC">${wrap(keyHex, o.user.certPath, o.dir)}</user_encrypted_key>` +
    `<ec2_encrypted_iv>${wrap(ivHex, o.cloud.certPath, o.dir)}</ec2_encrypted_iv>` +
    `<user_encrypted_iv>${wrap(ivHex, o.user.certPath, o.dir)}</user_encrypted_iv>` +
    `<parts count="${partPaths.length}">${partsXml}</parts></image>`;
  const signer = o.signWith ?? o.user;
  const signature =
    signer === 'UNSIGNED'
      ? 'UNSIGNED'
      : sh(`printf %s "$TEXT" | openssl dgst -sha1 -sign "$K" | od -An -v -tx1 | tr -d ' \\n'`, o.dir, { TEXT: machine + image, K: signer.keyPath });
  // Pretty-printed around the signed sections, as euca2ools' writer indents them.
  const manifestXml =
    `<?xml version="1.0" ?>\n<manifest>\n  <version>2007-10-10</version>\n  <bundler><name>euca-tools</name><version>3.4</version><release>0</release></bundler>\n  ` +
    `${machine}\n  ${image}\n  <signature>${signature}</signature>\n</manifest>\n`;
  const manifestPath = join(o.dir, `${o.prefix}.manifest.xml`);
  writeFileSync(manifestPath, manifestXml);
  return { manifestPath, manifestXml, partPaths, ciphertextBytes, partSize, keyHex, ivHex };
}
