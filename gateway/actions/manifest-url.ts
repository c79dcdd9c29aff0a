/**
 * The import manifest URL is fetched by our own stages, so it must point at this service's
 * object storage: any other host would make the service fetch URLs of the caller's choosing
 * (server-side request forgery into the operator's network).
 */
import { invalidValue } from '../errors';

const DEFAULT_PORTS: Record<string, string> = { 'http:': '80', 'https:': '443' };

export function checkManifestUrl(name: string, text: string, allowedObjectHosts: string[]): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalidValue(name, text, 'It must be an http or https URL of the import manifest in object storage.');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw invalidValue(name, text, `The manifest URL scheme ${url.protocol.replace(/:$/, '')} is not supported; use http or https.`);
  }
  if (url.username || url.password) {
    throw invalidValue(name, text, 'The manifest URL must not carry a user name or password; use a presigned URL.');
  }
  const port = url.port || DEFAULT_PORTS[url.protocol];
  const hostname = url.hostname.toLowerCase();
  const allowed = new Set(allowedObjectHosts.map((h) => h.toLowerCase()));
  if (!allowed.has(`${hostname}:${port}`) && !(port === DEFAULT_PORTS[url.protocol] && allowed.has(hostname))) {
    throw invalidValue(
      name,
      text,
      `The manifest URL host ${url.host} is not an object-storage endpoint of this service; upload the manifest to ${allowedObjectHosts.join(' or ') || 'the service object storage'}.`,
    );
  }
  return url;
}
