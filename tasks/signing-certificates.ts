/**
 * Bundle-signing certificates of an account, kept in the task store as resource records: added
 * and removed by an administrator (`imaging cert add|list|delete ACCOUNT`), read by the manifest
 * stage to verify a bundle's signature against its owner's certificates.
 */
import { X509Certificate } from 'crypto';
import type { SigningCertificateRecord } from './task';
import type { TaskStore } from './store';

/** A certificate that cannot be used to verify bundle signatures. */
export class CertificateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CertificateError';
  }
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/** A record for the first certificate of `pem`; refuses anything that is not an RSA X.509 certificate. */
export function signingCertificateRecord(accountId: string, pem: string, now = new Date()): SigningCertificateRecord {
  const block = PEM_BLOCK.exec(pem)?.[0];
  if (!block) throw new CertificateError('no PEM certificate (-----BEGIN CERTIFICATE-----) found');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(block);
  } catch (err) {
    throw new CertificateError(`the certificate cannot be read: ${(err as Error).message}`);
  }
  if (cert.publicKey.asymmetricKeyType !== 'rsa') throw new CertificateError(`the certificate's key is ${cert.publicKey.asymmetricKeyType}; bundles are signed with RSA keys`);
  const fingerprint = cert.fingerprint256;
  return {
    id: `cert-${fingerprint.replace(/:/g, '').toLowerCase().slice(0, 17)}`,
    kind: 'signing-certificate',
    accountId,
    pem: block + '\n',
    fingerprint,
    subject: cert.subject.replace(/\n/g, ', '),
    notAfter: new Date(cert.validTo).toISOString(),
    createdAt: now.toISOString(),
  };
}

export async function listSigningCertificates(store: TaskStore, accountId: string): Promise<SigningCertificateRecord[]> {
  return (await store.listResources({ kind: 'signing-certificate', accountId })) as SigningCertificateRecord[];
}

/** Adds a certificate to an account; adding one it already has changes nothing. */
export async function addSigningCertificate(store: TaskStore, accountId: string, pem: string): Promise<SigningCertificateRecord> {
  const record = signingCertificateRecord(accountId, pem);
  const existing = await store.getResource(record.id);
  if (existing) {
    if (existing.accountId !== accountId) throw new CertificateError(`this certificate (${record.fingerprint}) is registered for another account; each account signs with its own`);
    return existing as SigningCertificateRecord;
  }
  await store.putResource(record);
  return record;
}

/** Removes a certificate of an account by its id or fingerprint; false when the account has no such certificate. */
export async function deleteSigningCertificate(store: TaskStore, accountId: string, idOrFingerprint: string): Promise<boolean> {
  const wanted = idOrFingerprint.toUpperCase();
  const found = (await listSigningCertificates(store, accountId)).find((c) => c.id === idOrFingerprint || c.fingerprint === wanted);
  return found ? store.deleteResource(found.id) : false;
}
