/**
 * Fetching manifest and part URLs: only from allowed object-storage hosts, never following
 * redirects (a redirect could point anywhere), with bounded bodies.
 */
import { request as httpsRequest } from 'https';
import { Readable } from 'stream';
import { trustedCa } from '../toolkit/io/trusted-ca';
import { checkObjectUrl } from '../toolkit/io/url-policy';
import { ClientError } from './errors';

export function assertAllowedUrl(url: string, allowedHosts: string[], what: string): void {
  const verdict = checkObjectUrl(url, allowedHosts);
  if (!verdict.ok) throw new ClientError(`the ${what} URL is refused: ${verdict.reason}`);
}

export type FetchOutcome<T> = { kind: 'ok'; value: T } | { kind: 'missing'; status: number } | { kind: 'unavailable'; reason: string };

const TIMEOUT_MS = 30_000;

/** GETs a small object; `missing` for 403/404 (not uploaded yet, or not readable yet). */
export async function fetchSmallObject(url: string, maxBytes: number): Promise<FetchOutcome<Buffer>> {
  let res: Response;
  try {
    res = await fetchObject(url, 'GET');
  } catch (err) {
    return { kind: 'unavailable', reason: (err as Error).message };
  }
  if (res.status === 404 || res.status === 403) {
    await res.body?.cancel();
    return { kind: 'missing', status: res.status };
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
    res = await fetchObject(url, 'HEAD');
  } catch (err) {
    return { kind: 'unavailable', reason: (err as Error).message };
  }
  if (res.status === 404 || res.status === 403) return { kind: 'missing', status: res.status };
  if (res.status !== 200) return { kind: 'unavailable', reason: `HTTP ${res.status}` };
  const length = Number(res.headers.get('content-length'));
  if (!Number.isSafeInteger(length) || length < 0) return { kind: 'unavailable', reason: 'no Content-Length' };
  return { kind: 'ok', value: length };
}

/**
 * fetch() without following redirects; an https URL is fetched with node's https when the
 * process trusts an added CA bundle (IMAGING_S3_CA_BUNDLE), which fetch() cannot be told of.
 */
function fetchObject(url: string, method: 'GET' | 'HEAD'): Promise<Response> {
  const ca = trustedCa();
  const signal = AbortSignal.timeout(TIMEOUT_MS);
  if (!ca || !url.startsWith('https:')) return fetch(url, { method, redirect: 'manual', signal });
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method, ca, signal }, (res) => {
      const headers = new Headers();
      for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i], res.rawHeaders[i + 1]);
      const empty = method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304;
      if (empty) res.resume();
      resolve(new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status: res.statusCode, headers }));
    });
    req.on('error', reject);
    req.end();
  });
}
