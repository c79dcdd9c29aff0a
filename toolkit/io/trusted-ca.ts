/**
 * Certificate authorities this process trusts for https object storage besides Node's bundled
 * ones (IMAGING_S3_CA_BUNDLE): a private CA of a self-hosted S3 endpoint. Like Node's own
 * NODE_EXTRA_CA_CERTS it holds for the whole process, so every path to object storage (the SDK
 * client, ranged reads of presigned URLs, manifest fetches) trusts the same set; unlike it, it can
 * be set after start, from the settings.
 */
import { rootCertificates } from 'tls';
import { Agent } from 'https';

let extra: string[] = [];
let combined: string[] | undefined;

/** Adds the certificates of a PEM bundle (one or more CERTIFICATE blocks) to the trusted set. */
export function trustCaBundle(pem: string, source = 'the CA bundle'): void {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!blocks) throw new Error(`${source} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  extra = [...new Set([...extra, ...blocks])];
  combined = [...rootCertificates, ...extra];
}

/** The `ca` option for a TLS connection: undefined (Node's defaults) unless a bundle was added. */
export function trustedCa(): string[] | undefined {
  return combined;
}

/** Forgets added bundles (tests). */
export function resetTrustedCa(): void {
  extra = [];
  combined = undefined;
}

/** An https agent trusting the set, for clients that take one (the AWS SDK); undefined without a bundle. */
export function trustingHttpsAgent(options: { keepAlive?: boolean; maxSockets?: number } = {}): Agent | undefined {
  return combined ? new Agent({ ...options, ca: combined }) : undefined;
}
