/**
 * The cloud's key pair for bundles: bundlers wrap each bundle's AES key and IV for the cloud's
 * certificate, and the decrypt stage unwraps them with the private key (a secret). `imaging serve`
 * generates the key once in its data directory (mode 0600); distributed stages read it from a
 * mounted secret file. The certificate is derived from the key, so it always matches: a
 * self-signed X.509 v1 certificate, deterministic for a key (serial from the key's digest, fixed
 * validity), built here in DER because Node can read certificates but not make them.
 */
import { createHash, createPrivateKey, createPublicKey, createSign, generateKeyPairSync, type KeyObject } from 'crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'fs';

export const CLOUD_KEY_FILE = 'cloud-key.pem';
const CLOUD_CERT_SUBJECT = 'imaging cloud (bundle decryption)';

/** A cloud key that cannot be used: the message names the file and what is wrong. */
export class CloudKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CloudKeyError';
  }
}

function rsaPrivateKey(pem: string, where: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new CloudKeyError(`${where} holds no PEM private key: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'rsa') throw new CloudKeyError(`${where} holds a ${key.asymmetricKeyType} key; bundle keys are wrapped with RSA`);
  return key;
}

/** The PEM text of the cloud key in `path`, checked to be an RSA private key. */
export function readCloudKey(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CloudKeyError(`the cloud key file ${path} cannot be read: ${(err as Error).message}`);
  }
  rsaPrivateKey(pem, `the cloud key file ${path}`);
  return pem;
}

/** The cloud key at `path`, generated (RSA 2048, mode 0600) when there is none yet. */
export function ensureCloudKey(path: string): string {
  if (existsSync(path)) return readCloudKey(path);
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  writeFileSync(path, pem, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
  return pem;
}

// --- a minimal DER writer: just what a certificate needs ---
function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag: number, content: Buffer) => Buffer.concat([Buffer.from([tag]), length(content.length), content]);
const sequence = (...items: Buffer[]) => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]) => tlv(0x31, Buffer.concat(items));
function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [40 * a + b];
  for (const arc of rest) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}
function positiveInteger(bytes: Buffer): Buffer {
  return tlv(0x02, bytes[0] & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes);
}
const SHA256_WITH_RSA = sequence(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00]));
const commonName = (cn: string) => sequence(set(sequence(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn, 'utf8')))));

/** The self-signed certificate (PEM) of the cloud key: what bundlers encrypt bundle keys for. */
export function cloudCertificate(privateKeyPem: string): string {
  const key = rsaPrivateKey(privateKeyPem, 'the cloud key');
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const serial = createHash('sha256').update(spki).digest().subarray(0, 8);
  serial[0] &= 0x7f;
  const name = commonName(CLOUD_CERT_SUBJECT);
  // RFC 5280: 99991231235959Z means no well-defined expiry; the key is the cloud's until replaced.
  const validity = sequence(tlv(0x17, Buffer.from('200101000000Z')), tlv(0x18, Buffer.from('99991231235959Z')));
  const tbs = sequence(positiveInteger(serial), SHA256_WITH_RSA, name, validity, name, spki);
  const signature = createSign('sha256').update(tbs).sign(key);
  const der = sequence(tbs, SHA256_WITH_RSA, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const base64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${base64}\n-----END CERTIFICATE-----\n`;
}
