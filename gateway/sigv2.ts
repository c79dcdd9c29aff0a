/**
 * AWS Signature Version 2 verification (parameters AWSAccessKeyId, SignatureVersion=2,
 * SignatureMethod, Timestamp or Expires, Signature), still used by older EC2 tools such as
 * euca2ools. The signature covers the method, host, path and every parameter but Signature.
 */
import type { AccountDirectory } from './accounts';
import { Ec2Error } from './errors';
import type { QueryParams, RawRequest } from './query-request';
import {
  authFailureUnknownKey,
  type Caller,
  checkSkew,
  headerValue,
  hmac,
  MAX_CLOCK_SKEW_MS,
  signatureMismatch,
  signaturesEqual,
  uriEncode,
  type VerifyOptions,
} from './signing-common';

const METHODS = { HmacSHA256: 'sha256', HmacSHA1: 'sha1' } as const;

export function hasSigV2Params(params: QueryParams): boolean {
  return params.has('SignatureVersion') || params.has('AWSAccessKeyId');
}

export async function verifySigV2(raw: RawRequest, params: QueryParams, accounts: AccountDirectory, options: VerifyOptions = {}): Promise<Caller> {
  const now = options.now ?? new Date();
  const version = params.string('SignatureVersion');
  if (version !== '2') {
    throw new Ec2Error('IncompleteSignature', `SignatureVersion ${version ?? '(missing)'} is not supported; sign with Signature Version 4 or 2`);
  }
  const missing = ['AWSAccessKeyId', 'SignatureMethod', 'Signature'].filter((name) => !params.string(name));
  if (missing.length) throw new Ec2Error('IncompleteSignature', `The request is missing ${missing.join(', ')}, required for Signature Version 2`);
  const method = params.string('SignatureMethod')!;
  if (!(method in METHODS)) throw new Ec2Error('IncompleteSignature', `SignatureMethod ${method} is not supported; use HmacSHA256 or HmacSHA1`);
  checkTime(params, now, options.maxSkewMs ?? MAX_CLOCK_SKEW_MS);

  const accessKeyId = params.string('AWSAccessKeyId')!;
  const account = await accounts.lookup(accessKeyId);
  if (!account) throw authFailureUnknownKey(accessKeyId);

  const expected = hmac(account.secretAccessKey, sigV2StringToSign(raw, params), METHODS[method as keyof typeof METHODS]).toString('base64');
  if (!signaturesEqual(expected, params.string('Signature')!)) throw signatureMismatch('');
  return { accountId: account.accountId, accessKeyId };
}

function checkTime(params: QueryParams, now: Date, maxSkewMs: number): void {
  const timestamp = params.string('Timestamp');
  const expires = params.string('Expires');
  if (timestamp === undefined && expires === undefined) {
    throw new Ec2Error('MissingParameter', 'A Signature Version 2 request must contain the parameter Timestamp or Expires');
  }
  if (timestamp !== undefined) {
    const signedAt = parseTime('Timestamp', timestamp);
    checkSkew(signedAt, now, maxSkewMs);
  }
  if (expires !== undefined) {
    const expiresAt = parseTime('Expires', expires);
    if (now > expiresAt) throw new Ec2Error('RequestExpired', `The request expired at ${expiresAt.toISOString()} (Expires); sign a new one`);
  }
}

function parseTime(name: string, text: string): Date {
  const date = new Date(text);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text) || Number.isNaN(date.getTime())) {
    throw new Ec2Error('InvalidParameterValue', `Value (${text}) for parameter ${name} is invalid. It must be an ISO 8601 time such as 2026-01-31T12:00:00Z.`);
  }
  return date;
}

/** METHOD \n host \n path \n sorted, RFC 3986-encoded parameters (all but Signature). */
export function sigV2StringToSign(raw: RawRequest, params: QueryParams): string {
  const host = (headerValue(raw.headers, 'host') ?? '').toLowerCase();
  const query = params
    .entries()
    .filter(([name]) => name !== 'Signature')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => `${uriEncode(name)}=${uriEncode(value)}`)
    .join('&');
  return [raw.method, host, raw.path || '/', query].join('\n');
}
