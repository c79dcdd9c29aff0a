/**
 * The import manifest URL is fetched by our own stages, so it must point at this service's
 * object storage: any other host would make the service fetch URLs of the caller's choosing
 * (server-side request forgery into the operator's network). The policy is the stages' own
 * (toolkit/io/url-policy); here its verdict is worded as an EC2 error.
 */
import { checkObjectUrl, type UrlProblem } from '../../toolkit/io/url-policy';
import { invalidValue } from '../errors';

function advice(problem: UrlProblem, url: string, allowedObjectHosts: string[]): string {
  switch (problem) {
    case 'not-a-url':
      return 'It must be an http or https URL of the import manifest in object storage.';
    case 'scheme':
      return `The manifest URL scheme ${new URL(url).protocol.replace(/:$/, '')} is not supported; use http or https.`;
    case 'credentials':
      return 'The manifest URL must not carry a user name or password; use a presigned URL.';
    case 'host':
      return `The manifest URL host ${new URL(url).host} is not an object-storage endpoint of this service; upload the manifest to ${allowedObjectHosts.join(' or ') || 'the service object storage'}.`;
  }
}

export function checkManifestUrl(name: string, text: string, allowedObjectHosts: string[]): URL {
  const verdict = checkObjectUrl(text, allowedObjectHosts);
  if (!verdict.ok) throw invalidValue(name, text, advice(verdict.problem, text, allowedObjectHosts));
  return verdict.url;
}
