/**
 * The TLS settings of `imaging serve` and `imaging gateway`: the certificate and key the EC2
 * endpoint (and the embedded S3 endpoint) serve HTTPS with, and the CA bundle the service trusts
 * for https object storage. Files are read once at start; a wrong path stops the start, naming it.
 */
import { readFileSync } from 'fs';
import { trustCaBundle } from '../toolkit/io/trusted-ca';

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

function readSettingFile(path: string, env: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`${env}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The certificate and key to serve HTTPS with; undefined for plain HTTP. */
export function serverTlsFiles(settings: { tlsCert?: string; tlsKey?: string }): TlsFiles | undefined {
  const cert = settings.tlsCert?.trim();
  const key = settings.tlsKey?.trim();
  if (!cert && !key) return undefined;
  if (!cert || !key) throw new Error(`IMAGING_TLS_CERT and IMAGING_TLS_KEY go together: ${cert ? 'IMAGING_TLS_KEY' : 'IMAGING_TLS_CERT'} is not set`);
  const files = { cert: readSettingFile(cert, 'IMAGING_TLS_CERT'), key: readSettingFile(key, 'IMAGING_TLS_KEY') };
  if (!files.cert.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) throw new Error(`IMAGING_TLS_CERT: ${cert} holds no PEM certificate`);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(files.key.toString('latin1'))) throw new Error(`IMAGING_TLS_KEY: ${key} holds no PEM private key`);
  return files;
}

/** Makes the process trust the CA bundle of IMAGING_S3_CA_BUNDLE, when set. */
export function trustS3CaBundle(settings: { s3CaBundle?: string }): void {
  const path = settings.s3CaBundle?.trim();
  if (path) trustCaBundle(readSettingFile(path, 'IMAGING_S3_CA_BUNDLE').toString('utf8'), `IMAGING_S3_CA_BUNDLE (${path})`);
}
