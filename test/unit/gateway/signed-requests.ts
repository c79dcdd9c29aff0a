/** Requests signed by the SDK's own signer (@smithy/signature-v4), as the gateway receives them. */
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import type { RawRequest } from '../../../gateway/query-request';

export interface Unsigned {
  method?: 'GET' | 'POST';
  path?: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: string;
}

export const HOST = 'ec2.gateway.test:8773';

export function smithySigner(secret: string, opts: { accessKeyId?: string; region?: string; service?: string; sessionToken?: string } = {}) {
  return new SignatureV4({
    service: opts.service ?? 'ec2',
    region: opts.region ?? 'us-east-1',
    credentials: { accessKeyId: opts.accessKeyId ?? 'AKIDTEST', secretAccessKey: secret, sessionToken: opts.sessionToken },
    sha256: Sha256,
  });
}

function httpRequest(u: Unsigned) {
  return {
    method: u.method ?? 'POST',
    protocol: 'http:',
    hostname: HOST.split(':')[0],
    port: Number(HOST.split(':')[1]),
    path: u.path ?? '/',
    query: u.query ?? {},
    headers: { host: HOST, ...(u.body !== undefined ? { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' } : {}), ...(u.headers ?? {}) },
    body: u.body,
  };
}

/** What node's http server would hand us for this request: lowercase headers, raw query string. */
export function toRaw(signed: ReturnType<typeof httpRequest>): RawRequest {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(signed.headers)) headers[name.toLowerCase()] = String(value);
  const rawQuery = Object.entries(signed.query ?? {})
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&');
  return { method: signed.method, path: signed.path, rawQuery, headers, body: Buffer.from(signed.body ?? '', 'utf8') };
}

export async function signWithSmithy(u: Unsigned, secret: string, opts: Parameters<typeof smithySigner>[1] & { signingDate?: Date } = {}): Promise<RawRequest> {
  const signed = await smithySigner(secret, opts).sign(httpRequest(u) as any, { signingDate: opts.signingDate });
  return toRaw(signed as any);
}

export async function presignWithSmithy(u: Unsigned, secret: string, opts: Parameters<typeof smithySigner>[1] & { signingDate?: Date; expiresIn?: number } = {}): Promise<RawRequest> {
  const signed = await smithySigner(secret, opts).presign(httpRequest(u) as any, { signingDate: opts.signingDate, expiresIn: opts.expiresIn ?? 300 });
  return toRaw(signed as any);
}
