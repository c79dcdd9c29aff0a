/**
 * The cloud key and its certificate: generated once (0600), the certificate self-signed and
 * deterministic for its key, readable by openssl, and what openssl encrypts for it the key
 * unwraps; a key that is not RSA, or no key, is refused by name. Signing certificates of an
 * account: only RSA X.509 certificates, identified by their SHA-256 fingerprint.
 */
import { execFileSync } from 'child_process';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'crypto';
import { readFileSync, statSync, writeFileSync } from 'fs';
import { join } from 'path';
import { cloudCertificate, CloudKeyError, ensureCloudKey, readCloudKey } from '../../../toolkit/bundle/cloud-key';
import { unwrapBundleKey } from '../../../toolkit/bundle/bundle-keys';
import { CertificateError, signingCertificateRecord } from '../../../tasks/signing-certificates';
import { stageConfigFromEnv } from '../../../functions/host/env-config';
import { tempDir } from '../../helpers/disk-corpus';
import { makeKeyPair } from '../../helpers/euca-bundle';

let dir: string;
beforeAll(() => {
  dir = tempDir('cloud-key-test-');
});

test('ensureCloudKey makes an RSA key once, mode 0600, and keeps it', () => {
  const path = join(dir, 'cloud-key.pem');
  const first = ensureCloudKey(path);
  expect(statSync(path).mode & 0o777).toBe(0o600);
  expect(ensureCloudKey(path)).toBe(first);
  expect(readCloudKey(path)).toBe(first);
});

test('the certificate matches the key, verifies itself, reads in openssl, and is the same each time', () => {
  const key = ensureCloudKey(join(dir, 'cert-key.pem'));
  const pem = cloudCertificate(key);
  expect(cloudCertificate(key)).toBe(pem);
  const cert = new X509Certificate(pem);
  expect(cert.verify(cert.publicKey)).toBe(true);
  expect(cert.checkPrivateKey(createPrivateKey(key))).toBe(true);
  const certPath = join(dir, 'cloud-cert.pem');
  writeFileSync(certPath, pem);
  expect(execFileSync('openssl', ['x509', '-in', certPath, '-noout', '-subject']).toString()).toContain('imaging cloud');
  // A key and IV wrapped by openssl for this certificate, as euca-bundle-image wraps them, unwrap.
  const wrap = (hex: string) => execFileSync('openssl', ['pkeyutl', '-encrypt', '-certin', '-inkey', certPath], { input: hex }).toString('hex');
  const keyHex = '00112233445566778899aabbccddeeff';
  const ivHex = 'ffeeddccbbaa99887766554433221100';
  const cipher = unwrapBundleKey({ ec2EncryptedKey: wrap(keyHex), ec2EncryptedIv: wrap(ivHex) }, key);
  expect([cipher.key.toString('hex'), cipher.iv.toString('hex')]).toEqual([keyHex, ivHex]);
});

test('a key that is not RSA, a file that is no key, and a missing file are refused by name', () => {
  const ec = join(dir, 'ec.pem');
  writeFileSync(ec, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  expect(() => readCloudKey(ec)).toThrow(new CloudKeyError(`the cloud key file ${ec} holds a ec key; bundle keys are wrapped with RSA`));
  const junk = join(dir, 'junk.pem');
  writeFileSync(junk, 'not a key');
  expect(() => readCloudKey(junk)).toThrow(/holds no PEM private key/);
  expect(() => readCloudKey(join(dir, 'absent.pem'))).toThrow(/cannot be read/);
});

test('signing certificates: an RSA certificate is recorded by its fingerprint; anything else is refused', () => {
  const pair = makeKeyPair(dir, 'signer');
  const record = signingCertificateRecord('123456789012', `some text before\n${pair.certPem}`);
  const fingerprint = new X509Certificate(pair.certPem).fingerprint256;
  expect(record).toMatchObject({ kind: 'signing-certificate', accountId: '123456789012', fingerprint, subject: 'CN=signer' });
  expect(record.id).toBe(`cert-${fingerprint.replace(/:/g, '').toLowerCase().slice(0, 17)}`);
  expect(() => signingCertificateRecord('123456789012', readFileSync(pair.keyPath, 'utf8'))).toThrow(CertificateError);
  const ecCert = join(dir, 'ec-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'ec-key.pem'), '-out', ecCert, '-subj', '/CN=ec', '-days', '1'], { stdio: 'ignore' });
  expect(() => signingCertificateRecord('123456789012', readFileSync(ecCert, 'utf8'))).toThrow(/the certificate's key is ec; bundles are signed with RSA keys/);
});

test('a stage process reads the cloud key from IMAGING_CLOUD_KEY_FILE and IMAGING_ACCEPT_UNSIGNED_BUNDLES; a bad key file stops it by name', () => {
  const minimal = { IMAGING_MONGODB_URI: 'mongodb://db:27017', IMAGING_S3_ENDPOINT: 'http://s3.internal:9000', IMAGING_S3_ACCESS_KEY_ID: 'AKIA', IMAGING_S3_SECRET_ACCESS_KEY: 'secret' };
  const keyFile = join(dir, 'stage-key.pem');
  const pem = ensureCloudKey(keyFile);
  expect(stageConfigFromEnv(minimal)).not.toHaveProperty('cloudPrivateKey');
  expect(stageConfigFromEnv({ ...minimal, IMAGING_CLOUD_KEY_FILE: keyFile, IMAGING_ACCEPT_UNSIGNED_BUNDLES: 'true' })).toMatchObject({ cloudPrivateKey: pem, acceptUnsignedBundles: true });
  expect(() => stageConfigFromEnv({ ...minimal, IMAGING_CLOUD_KEY_FILE: join(dir, 'nowhere.pem') })).toThrow(/the cloud key file .*nowhere\.pem cannot be read/);
});
