/**
 * The AES key and IV of a bundle travel RSA-encrypted (PKCS#1 v1.5) in the manifest: the
 * producer encrypts the 32-character hex *string* of each with the cloud's certificate.
 *
 * Node 20 refuses RSA_PKCS1_PADDING for private decryption (CVE-2023-46809, the Marvin timing
 * attack), so the RSA step runs without padding and the type-2 padding is removed here. A padding
 * failure and a malformed key give the same message, so the answer is no padding oracle.
 */
import { constants, privateDecrypt, publicEncrypt, randomBytes, type KeyLike } from 'crypto';
import { ManifestError } from './import-manifest';

export interface BundleCipherKey {
  key: Buffer; // 16 bytes, AES-128
  iv: Buffer; // 16 bytes
}

const UNWRAP_FAILED = 'the bundle key or IV cannot be decrypted with this cloud\'s key: the bundle was encrypted for another cloud certificate, or its manifest is damaged';

/** The plaintext of a PKCS#1 v1.5 type-2 block, or undefined when the padding is not well formed. */
function stripPkcs1Type2(block: Buffer): Buffer | undefined {
  if (block.length < 11 || block[0] !== 0x00 || block[1] !== 0x02) return undefined;
  const separator = block.indexOf(0x00, 2);
  if (separator < 10) return undefined; // at least 8 non-zero padding bytes
  return block.subarray(separator + 1);
}

/** 16 bytes from what the producer wrapped: the 32-character hex text (euca2ools, ec2-bundle-image) or, leniently, the raw 16 bytes. */
function keyBytes(plain: Buffer): Buffer | undefined {
  const asText = plain.toString('latin1');
  if (/^[0-9a-fA-F]{32}$/.test(asText)) return Buffer.from(asText, 'hex');
  if (plain.length === 16) return Buffer.from(plain);
  return undefined;
}

function unwrapOne(wrappedHex: string, cloudPrivateKey: KeyLike): Buffer {
  let block: Buffer;
  try {
    block = privateDecrypt({ key: cloudPrivateKey, padding: constants.RSA_NO_PADDING }, Buffer.from(wrappedHex, 'hex'));
  } catch {
    throw new ManifestError(UNWRAP_FAILED);
  }
  const plain = stripPkcs1Type2(block);
  const bytes = plain && keyBytes(plain);
  if (!bytes) throw new ManifestError(UNWRAP_FAILED);
  return bytes;
}

/** Unwraps the manifest's ec2_encrypted_key and ec2_encrypted_iv with the cloud's private key. */
export function unwrapBundleKey(wrapped: { ec2EncryptedKey: string; ec2EncryptedIv: string }, cloudPrivateKey: KeyLike): BundleCipherKey {
  return { key: unwrapOne(wrapped.ec2EncryptedKey, cloudPrivateKey), iv: unwrapOne(wrapped.ec2EncryptedIv, cloudPrivateKey) };
}

/** Wraps a key or IV for a recipient's certificate or public key, as bundlers do (hex text, PKCS#1 v1.5, hex out). */
export function wrapBundleKeyPart(bytes: Buffer, recipient: KeyLike): string {
  return publicEncrypt({ key: recipient, padding: constants.RSA_PKCS1_PADDING }, Buffer.from(bytes.toString('hex'), 'latin1')).toString('hex');
}

export function newBundleCipherKey(): BundleCipherKey {
  return { key: randomBytes(16), iv: randomBytes(16) };
}
