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
  exactUtcDate,
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

/**
 * AWS: a request carries Timestamp or Expires, not both. A Timestamp must be within the clock
 * skew; an Expires must be in the future, and no further ahead than that skew either: SigV2 has
 * no signing time of its own, so an Expires years ahead would make the signature replayable for
 * years (SigV2 requests are made to be sent at once, not handed out like presigned URLs).
 */
function checkTime(params: QueryParams, now: Date, maxSkewMs: number): void {
  const timestamp = params.string('Timestamp');
  const expires = params.string('Expires');
  if (timestamp === undefined && expires === undefined) {
    throw new Ec2Error('MissingParameter', 'A Signature Version 2 request must contain the parameter Timestamp or Expires');
  }
  if (timestamp !== undefined && expires !== undefined) {
    throw new Ec2Error('InvalidParameter', 'A Signature Version 2 request must contain Timestamp or Expires, not both');
  }
  if (timestamp !== undefined) {
    const signedAt = parseTime('Timestamp', timestamp);
    checkSkew(signedAt, now, maxSkewMs);
  }
  if (expires !== undefined) {
    const expiresAt = parseTime('Expires', expires);
    if (now > expiresAt) throw new Ec2Error('RequestExpired', `The request expired at ${expiresAt.toISOString()} (Expires); sign a new one`);
    if (expiresAt.getTime() - now.getTime() > maxSkewMs) {
      throw new Ec2Error(
        'InvalidParameterValue',
        `Value (${expires}) for parameter Expires is invalid. It is more than ${Math.round(maxSkewMs / 60000)} minutes after the server time ${now.toISOString()}; sign with an Expires at most that far ahead, or with a Timestamp`,
      );
    }
  }
}

/** ISO 8601 as SigV2 clients write it: 2026-01-31T12:00:00Z, optional fraction, Z or ±hh:mm (none means UTC). */
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})?$/;

function parseTime(name: string, text: string): Date {
  const m = ISO_TIME.exec(text);
  const local = m ? exactUtcDate(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], m[7] ? Math.floor(Number(`0.${m[7]}`) * 1000) : 0) : undefined;
  const zone = m?.[8] && m[8] !== 'Z' ? /^([+-])(\d{2}):(\d{2})$/.exec(m[8]) : undefined;
  if (!local || (zone && (+zone[2] > 23 || +zone[3] > 59))) {
    throw new Ec2Error('InvalidParameterValue', `Value (${text}) for parameter ${name} is invalid. It must be an ISO 8601 time such as 2026-01-31T12:00:00Z.`);
  }
  const offsetMs = zone ? (zone[1] === '-' ? -1 : 1) * (+zone[2] * 60 + +zone[3]) * 60_000 : 0;
  return new Date(local.getTime() - offsetMs);
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
