/**
 * URLs found in manifests are user input: fetching them is a server-side request forgery door.
 * Only http(s) URLs on a configured object-storage endpoint (host[:port]) are ever fetched.
 */
export function hostOf(endpoint: string): string {
  const url = new URL(endpoint);
  return url.host.toLowerCase();
}

/** A configured comma-separated list of host[:port] entries (IMAGING_ALLOWED_OBJECT_HOSTS). */
export function parseHostList(text: string): string[] {
  return text.split(',').map((h) => h.trim().toLowerCase()).filter((h) => h !== '');
}

/** Why a URL is refused: callers that word their own messages (the EC2 API) switch on this. */
export type UrlProblem = 'not-a-url' | 'scheme' | 'credentials' | 'host';

export type UrlVerdict = { ok: true; url: URL } | { ok: false; problem: UrlProblem; reason: string };

export function checkObjectUrl(raw: string, allowedHosts: string[]): UrlVerdict {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, problem: 'not-a-url', reason: `"${raw.slice(0, 200)}" is not a URL` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { ok: false, problem: 'scheme', reason: `URL scheme ${url.protocol} is not http or https` };
  if (url.username || url.password) return { ok: false, problem: 'credentials', reason: 'URLs with user names or passwords are not accepted' };
  const allowed = allowedHosts.map((h) => h.toLowerCase());
  const host = url.host.toLowerCase();
  const hostWithDefaultPort = url.port ? host : `${host}:${url.protocol === 'https:' ? 443 : 80}`;
  if (!allowed.includes(host) && !allowed.includes(hostWithDefaultPort)) {
    return { ok: false, problem: 'host', reason: `host ${url.host} is not an object-storage endpoint of this service (allowed: ${allowedHosts.join(', ')})` };
  }
  return { ok: true, url };
}
