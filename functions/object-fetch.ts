/**
 * Fetching manifest and part URLs: only from allowed object-storage hosts, never following
 * redirects (a redirect could point anywhere), with bounded bodies.
 */
import { checkObjectUrl } from '../toolkit/io/url-policy';
import { ClientError, ServerError } from './errors';

/** Which URLs a stage may fetch, and which hosts the service itself stands behind for this task. */
export interface ObjectUrlPolicy {
  /** The stage's IMAGING_ALLOWED_OBJECT_HOSTS (host[:port]). */
  allowedHosts: string[];
  /**
   * Hosts of the service's own object storage as far as this task is concerned: the stage's S3
   * endpoint, and the hosts of URLs the service already accepted (the gateway checked the
   * manifest URL; an earlier stage checked the parts). A refusal of one of these is the
   * service's misconfiguration, not the user's doing.
   */
  serviceHosts: string[];
}

/** The policy for a task: the stage's settings, with `acceptedUrls` vouched for by the service. */
export function objectUrlPolicy(config: { allowedObjectHosts: string[]; storage: { endpoint: string } }, acceptedUrls: string[] = []): ObjectUrlPolicy {
  const hosts = [config.storage.endpoint, ...acceptedUrls].map(hostWithPort).filter((h): h is string => h !== undefined);
  return { allowedHosts: config.allowedObjectHosts, serviceHosts: [...new Set(hosts)] };
}

/**
 * Refuses a URL the stage may not fetch. The user is blamed (ClientError) for a URL of their own
 * making: a foreign host, a bad scheme, credentials in it. A URL on a host the service stands
 * behind that its own setting refuses is a ServerError: retried, and the operator must fix it.
 */
export function assertAllowedUrl(url: string, policy: ObjectUrlPolicy, what: string): void {
  const verdict = checkObjectUrl(url, policy.allowedHosts);
  if (verdict.ok) return;
  const host = hostWithPort(url);
  if (verdict.problem === 'host' && host !== undefined && policy.serviceHosts.includes(host)) {
    throw new ServerError(
      `the ${what} URL is on ${new URL(url).host}, the service's own object storage, but this stage's IMAGING_ALLOWED_OBJECT_HOSTS (${policy.allowedHosts.join(', ') || 'empty'}) does not include it; the operator must add it`,
    );
  }
  throw new ClientError(`the ${what} URL is refused: ${verdict.reason}`);
}

function hostWithPort(raw: string): string | undefined {
  try {
    const url = new URL(raw);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
    return `${url.hostname.toLowerCase()}:${url.port || (url.protocol === 'https:' ? '443' : '80')}`;
  } catch {
    return undefined;
  }
}

export type FetchOutcome<T> = { kind: 'ok'; value: T } | { kind: 'missing'; status: number } | { kind: 'unavailable'; reason: string };

const TIMEOUT_MS = 30_000;

function isRedirect(status: number): boolean {
  return status >= 300 && status < 400 && status !== 304;
}

/**
 * The user's bucket answered with a redirect (S3 does for a bucket in another region or behind
 * another endpoint): redirects are never followed, and only the user can fix the URL.
 */
function redirectRefused(url: string, res: Response): ClientError {
  const { host, pathname } = new URL(url);
  const location = res.headers.get('location');
  const to = location ? ` to ${location.slice(0, 200).replace(/\?.*$/, '')}` : '';
  return new ClientError(`the object ${pathname} on ${host} answered HTTP ${res.status}, a redirect${to}; redirects are not followed: presign the URL for the endpoint where the bucket is`);
}

/** GETs a small object; `missing` for 403/404 (not uploaded yet, or not readable yet). */
export async function fetchSmallObject(url: string, maxBytes: number): Promise<FetchOutcome<Buffer>> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (err) {
    return { kind: 'unavailable', reason: (err as Error).message };
  }
  if (res.status === 404 || res.status === 403) {
    await res.body?.cancel();
    return { kind: 'missing', status: res.status };
  }
  if (isRedirect(res.status)) {
    await res.body?.cancel();
    throw redirectRefused(url, res);
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    return { kind: 'unavailable', reason: `HTTP ${res.status}` };
  }
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > maxBytes) {
    await res.body?.cancel();
    throw new ClientError(`the import manifest is ${declared} bytes; at most ${maxBytes} are accepted`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (total > maxBytes) throw new ClientError(`the import manifest is larger than ${maxBytes} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return { kind: 'ok', value: Buffer.concat(chunks) };
}

/** HEADs an object; the size when it exists. */
export async function headObjectSize(url: string): Promise<FetchOutcome<number>> {
  let res: Response;
  try {
    res = await fetch(url, { method: 'HEAD', redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (err) {
    return { kind: 'unavailable', reason: (err as Error).message };
  }
  if (res.status === 404 || res.status === 403) return { kind: 'missing', status: res.status };
  if (isRedirect(res.status)) throw redirectRefused(url, res);
  if (res.status !== 200) return { kind: 'unavailable', reason: `HTTP ${res.status}` };
  const length = Number(res.headers.get('content-length'));
  if (!Number.isSafeInteger(length) || length < 0) return { kind: 'unavailable', reason: 'no Content-Length' };
  return { kind: 'ok', value: length };
}
