/**
 * Who sent a request to the embedded S3 endpoint: SigV4 (Authorization header or presigned
 * query, verified with the gateway's SigV4 code under an S3 profile) or S3's SigV2 (header
 * `AWS key:signature`, or the query AWSAccessKeyId/Expires/Signature that boto3 presigns by
 * default). Unsigned requests are refused. Failures are S3 errors, with S3's codes.
 * S3 SigV2: https://docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html
 */
import type { IncomingHttpHeaders } from 'http';
import type { AccountDirectory } from '../gateway/accounts';
import { Ec2Error } from '../gateway/errors';
import type { RawRequest } from '../gateway/query-request';
import { headerValue, hmac, MAX_CLOCK_SKEW_MS, signaturesEqual } from '../gateway/signing-common';
import { hasSigV4Header, hasSigV4Query, type SigV4Profile, verifySigV4 } from '../gateway/sigv4';

/** An S3 error answer: code, message, HTTP status. */
export class S3Error extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'S3Error';
  }
}

export interface S3Account {
  accountId: string;
  secretAccessKey: string;
}

/** Finds the account an access key belongs to (the EC2 API's account store plugs in here). */
export type S3KeyLookup = (accessKeyId: string) => S3Account | undefined | Promise<S3Account | undefined>;

export interface S3Caller {
  accountId: string;
  accessKeyId: string;
  /** The SHA-256 (hex) the body must have, when the signature covers the body. */
  payloadSha256?: string;
  /** The body is aws-chunked with a checksum trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER), to be decoded. */
  streamingTrailer?: boolean;
}

export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
/** aws-chunked body, unsigned, with a checksum trailer (cli/aws-chunked.ts decodes it). */
export const STREAMING_UNSIGNED_TRAILER = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER';
/** Longest validity of a presigned URL, SigV4 or SigV2 (AWS caps SigV4 at 7 days; we cap both). */
export const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

/** S3 signs the path as sent (no dot-segment removal, no second encoding) and declares the body's hash. */
const S3_SIGV4_PROFILE: SigV4Profile = {
  service: 's3',
  canonicalUri: (path) => path || '/',
  payloadHashes: (raw, presigned) => {
    const declared = headerValue(raw.headers, 'x-amz-content-sha256')?.trim();
    if (declared === undefined) {
      if (presigned) return [UNSIGNED_PAYLOAD];
      throw new S3Error('InvalidRequest', 'Missing required header for this request: x-amz-content-sha256', 400);
    }
    if (declared === UNSIGNED_PAYLOAD || declared === STREAMING_UNSIGNED_TRAILER || /^[0-9a-f]{64}$/i.test(declared)) return [declared];
    // Signed aws-chunked bodies (STREAMING-AWS4-HMAC-SHA256-PAYLOAD...) are not decoded; clients can be told not to use them.
    throw new S3Error('NotImplemented', `x-amz-content-sha256 ${declared} is not supported here; send the body whole (UNSIGNED-PAYLOAD or its SHA-256)`, 501);
  },
};

export async function authenticateS3(raw: RawRequest, lookup: S3KeyLookup, now = new Date()): Promise<S3Caller> {
  const authorization = headerValue(raw.headers, 'authorization');
  const query = new URLSearchParams(raw.rawQuery);
  const accounts: AccountDirectory = { lookup: async (id) => lookup(id) };
  try {
    if (authorization !== undefined) {
      if (hasSigV4Header(raw)) return withPayload(raw, await verifySigV4(raw, accounts, { now }, S3_SIGV4_PROFILE));
      if (/^AWS [^:\s]+:\S+$/.test(authorization.trim())) return await verifySigV2Header(raw, authorization.trim(), lookup, now);
      throw new S3Error('InvalidArgument', 'Unsupported Authorization Type', 400);
    }
    if (hasSigV4Query(raw)) return withPayload(raw, await verifySigV4(raw, accounts, { now }, S3_SIGV4_PROFILE));
    if (query.has('Signature') || query.has('AWSAccessKeyId')) return await verifySigV2Query(raw, query, lookup, now);
  } catch (err) {
    throw asS3Error(err, presignedOrHeader(authorization));
  }
  throw new S3Error('AccessDenied', 'Anonymous access is not allowed; sign the request with the access key of an account', 403);
}

const presignedOrHeader = (authorization: string | undefined) => (authorization === undefined ? 'query' : 'header');

function withPayload(raw: RawRequest, caller: { accountId: string; accessKeyId: string }): S3Caller {
  const declared = headerValue(raw.headers, 'x-amz-content-sha256')?.trim();
  if (declared === STREAMING_UNSIGNED_TRAILER) return { ...caller, streamingTrailer: true };
  const sha256 = declared?.toLowerCase();
  return { ...caller, payloadSha256: sha256 && sha256 !== UNSIGNED_PAYLOAD.toLowerCase() ? sha256 : undefined };
}

/** The gateway's verifier speaks EC2; the same failures in S3's words. */
function asS3Error(err: unknown, where: 'query' | 'header'): unknown {
  if (!(err instanceof Ec2Error)) return err;
  switch (err.code) {
    case 'AuthFailure':
      return new S3Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.', 403);
    case 'SignatureDoesNotMatch':
      return new S3Error('SignatureDoesNotMatch', err.message, 403);
    case 'RequestExpired':
      return /presigned/.test(err.message) ? new S3Error('AccessDenied', `Request has expired. ${err.message}`, 403) : new S3Error('RequestTimeTooSkewed', `The difference between the request time and the current time is too large. ${err.message}`, 403);
    case 'IncompleteSignature':
      return where === 'query' ? new S3Error('AuthorizationQueryParametersError', err.message, 400) : new S3Error('AuthorizationHeaderMalformed', err.message, 400);
    default:
      return new S3Error('InvalidRequest', err.message, 400);
  }
}

async function verifySigV2Header(raw: RawRequest, authorization: string, lookup: S3KeyLookup, now: Date): Promise<S3Caller> {
  const [accessKeyId, signature] = authorization.slice(4).split(':');
  const amzDate = headerValue(raw.headers, 'x-amz-date');
  const dateText = amzDate ?? headerValue(raw.headers, 'date');
  const signedAt = dateText ? new Date(dateText) : undefined;
  if (!signedAt || Number.isNaN(signedAt.getTime())) throw new S3Error('AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header', 403);
  if (Math.abs(signedAt.getTime() - now.getTime()) > MAX_CLOCK_SKEW_MS) {
    throw new S3Error('RequestTimeTooSkewed', `The difference between the request time (${signedAt.toISOString()}) and the current time (${now.toISOString()}) is too large.`, 403);
  }
  // With x-amz-date the Date line is empty: x-amz-date is signed among the x-amz-* headers.
  return checkSigV2(raw, accessKeyId, signature, amzDate !== undefined ? '' : dateText!, lookup);
}

async function verifySigV2Query(raw: RawRequest, query: URLSearchParams, lookup: S3KeyLookup, now: Date): Promise<S3Caller> {
  const missing = ['AWSAccessKeyId', 'Expires', 'Signature'].filter((name) => !query.get(name));
  if (missing.length) throw new S3Error('AccessDenied', `Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters; missing ${missing.join(', ')}`, 403);
  const expiresText = query.get('Expires')!;
  if (!/^\d{1,12}$/.test(expiresText)) throw new S3Error('AccessDenied', `Expires ${expiresText} is not a time in seconds since 1970`, 403);
  const expiresAt = Number(expiresText) * 1000;
  if (expiresAt < now.getTime()) throw new S3Error('AccessDenied', `Request has expired (Expires ${new Date(expiresAt).toISOString()})`, 403);
  if (expiresAt - now.getTime() > MAX_PRESIGN_SECONDS * 1000) {
    throw new S3Error('AuthorizationQueryParametersError', `Expires ${new Date(expiresAt).toISOString()} is more than ${MAX_PRESIGN_SECONDS} seconds (7 days) ahead; presign for at most 7 days`, 400);
  }
  return checkSigV2(raw, query.get('AWSAccessKeyId')!, query.get('Signature')!, expiresText, lookup);
}

async function checkSigV2(raw: RawRequest, accessKeyId: string, signature: string, dateLine: string, lookup: S3KeyLookup): Promise<S3Caller> {
  const account = await lookup(accessKeyId);
  if (!account) throw new S3Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.', 403);
  const expected = hmac(account.secretAccessKey, sigV2StringToSign(raw, dateLine), 'sha1').toString('base64');
  if (!signaturesEqual(expected, signature)) {
    throw new S3Error('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.', 403);
  }
  // SigV2 does not sign the body; Content-MD5, when sent, is signed and checked by the store.
  return { accountId: account.accountId, accessKeyId };
}

/** Query parameters that name a sub-resource or override a response header: signed in SigV2. */
const SIGNED_SUBRESOURCES = new Set([
  'acl', 'cors', 'delete', 'lifecycle', 'location', 'logging', 'notification', 'partNumber', 'policy', 'requestPayment',
  'restore', 'tagging', 'torrent', 'uploadId', 'uploads', 'versionId', 'versioning', 'versions', 'website',
  'response-cache-control', 'response-content-disposition', 'response-content-encoding', 'response-content-language',
  'response-content-type', 'response-expires',
]);

export function sigV2StringToSign(raw: RawRequest, dateLine: string): string {
  const amzHeaders = amzHeaderLines(raw.headers);
  const subresources = [...new URLSearchParams(raw.rawQuery)]
    .filter(([name]) => SIGNED_SUBRESOURCES.has(name))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => (value === '' ? name : `${name}=${value}`));
  const resource = (raw.path || '/') + (subresources.length ? `?${subresources.join('&')}` : '');
  return [raw.method, headerValue(raw.headers, 'content-md5') ?? '', headerValue(raw.headers, 'content-type') ?? '', dateLine, ...amzHeaders, resource].join('\n');
}

function amzHeaderLines(headers: IncomingHttpHeaders): string[] {
  return Object.keys(headers)
    .filter((name) => name.startsWith('x-amz-'))
    .sort()
    .map((name) => `${name}:${(headerValue(headers, name) ?? '').trim()}`);
}
