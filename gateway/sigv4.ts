/**
 * AWS Signature Version 4 verification, for the Authorization header and for presigned query
 * strings. We rebuild the canonical request from the bytes we received and sign it with the
 * caller's secret; the spec is https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html
 */
import type { AccountDirectory } from './accounts';
import { Ec2Error } from './errors';
import type { RawRequest } from './query-request';
import {
  authFailureUnknownKey,
  type Caller,
  checkSkew,
  exactUtcDate,
  headerValue,
  hmac,
  MAX_CLOCK_SKEW_MS,
  sha256Hex,
  signatureMismatch,
  signaturesEqual,
  uriEncode,
  type VerifyOptions,
} from './signing-common';

export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';
const SERVICE = 'ec2';
const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
/** Longest validity of a presigned request, as in AWS (7 days). */
const MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600;

/** What a SigV4 signature claims, before we check it. */
export interface SigV4Claim {
  accessKeyId: string;
  scopeDate: string; // YYYYMMDD
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
  amzDate: string; // YYYYMMDDTHHMMSSZ
  signedAt: Date;
  /** Presigned only: seconds the signature is valid for. */
  expiresSeconds?: number;
}

export function hasSigV4Header(raw: RawRequest): boolean {
  return headerValue(raw.headers, 'authorization')?.trimStart().startsWith('AWS4-') ?? false;
}

export function hasSigV4Query(raw: RawRequest): boolean {
  return queryPairs(raw.rawQuery).some(([name]) => name === 'X-Amz-Algorithm');
}

/**
 * What differs between services that verify SigV4: the service name in the credential scope, how
 * the path is canonicalised, and which payload hashes stand for the body. EC2 is the default;
 * the embedded S3 endpoint verifies with its own profile (S3 signs the path as sent, unnormalised,
 * and checks the body against the declared hash while it streams).
 */
export interface SigV4Profile {
  service: string;
  canonicalUri(path: string): string;
  payloadHashes(raw: RawRequest, presigned: boolean): string[];
}

export const EC2_SIGV4_PROFILE: SigV4Profile = {
  service: SERVICE,
  canonicalUri: (path) => canonicalUri(path),
  payloadHashes: (raw, presigned) => acceptablePayloadHashes(raw, presigned),
};

/** Checks a SigV4-signed request (header or presigned) and returns the caller. */
export async function verifySigV4(raw: RawRequest, accounts: AccountDirectory, options: VerifyOptions = {}, profile: SigV4Profile = EC2_SIGV4_PROFILE): Promise<Caller> {
  const now = options.now ?? new Date();
  const maxSkewMs = options.maxSkewMs ?? MAX_CLOCK_SKEW_MS;
  const presigned = !hasSigV4Header(raw);
  const claim = presigned ? claimFromQuery(raw) : claimFromHeader(raw);

  checkScope(claim, profile.service);
  if (claim.expiresSeconds === undefined) {
    checkSkew(claim.signedAt, now, maxSkewMs);
  } else {
    // A presigned URL may be used long after signing, but not before it was (give or take skew).
    const expiresAt = new Date(claim.signedAt.getTime() + claim.expiresSeconds * 1000);
    if (claim.signedAt.getTime() > now.getTime() + maxSkewMs) checkSkew(claim.signedAt, now, maxSkewMs);
    if (now > expiresAt) throw new Ec2Error('RequestExpired', `The presigned request expired at ${expiresAt.toISOString()}; sign a new one`);
  }
  for (const name of claim.signedHeaders) {
    if (headerValue(raw.headers, name) === undefined) {
      throw new Ec2Error('IncompleteSignature', `Header ${name} is listed in SignedHeaders but is not in the request`);
    }
  }

  const account = await accounts.lookup(claim.accessKeyId);
  if (!account) throw authFailureUnknownKey(claim.accessKeyId);

  const key = cachedSigningKey(account.secretAccessKey, claim.scopeDate, claim.region, claim.service);
  for (const payloadHash of profile.payloadHashes(raw, presigned)) {
    const expected = hmac(key, stringToSign(claim, canonicalRequest(raw, claim.signedHeaders, payloadHash, presigned, profile))).toString('hex');
    if (signaturesEqual(expected, claim.signature)) return { accountId: account.accountId, accessKeyId: claim.accessKeyId };
  }
  throw signatureMismatch('');
}

function claimFromHeader(raw: RawRequest): SigV4Claim {
  const header = headerValue(raw.headers, 'authorization')!.trim();
  const space = header.indexOf(' ');
  const algorithm = space < 0 ? header : header.slice(0, space);
  if (algorithm !== SIGV4_ALGORITHM) throw new Ec2Error('IncompleteSignature', `Authorization algorithm ${algorithm} is not supported; use ${SIGV4_ALGORITHM}`);
  const fields = new Map<string, string>();
  for (const part of header.slice(space + 1).split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const missing = ['Credential', 'SignedHeaders', 'Signature'].filter((f) => !fields.get(f));
  if (missing.length) {
    throw new Ec2Error('IncompleteSignature', `Authorization header is missing ${missing.join(', ')}; it must have Credential=, SignedHeaders= and Signature=`);
  }
  const amzDate = headerValue(raw.headers, 'x-amz-date') ?? dateHeaderAsAmzDate(raw);
  return {
    ...parseCredential(fields.get('Credential')!),
    signedHeaders: parseSignedHeaders(fields.get('SignedHeaders')!),
    signature: fields.get('Signature')!,
    amzDate,
    signedAt: parseAmzDate(amzDate, 'X-Amz-Date header'),
  };
}

function claimFromQuery(raw: RawRequest): SigV4Claim {
  const query = new Map(queryPairs(raw.rawQuery));
  const missing = ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-SignedHeaders', 'X-Amz-Signature', 'X-Amz-Expires'].filter((f) => !query.get(f));
  if (missing.length) throw new Ec2Error('IncompleteSignature', `The presigned request is missing ${missing.join(', ')}`);
  const algorithm = query.get('X-Amz-Algorithm')!;
  if (algorithm !== SIGV4_ALGORITHM) throw new Ec2Error('IncompleteSignature', `X-Amz-Algorithm ${algorithm} is not supported; use ${SIGV4_ALGORITHM}`);
  const expiresText = query.get('X-Amz-Expires')!;
  const expiresSeconds = Number(expiresText);
  if (!/^\d+$/.test(expiresText) || expiresSeconds < 1 || expiresSeconds > MAX_PRESIGN_EXPIRES_S) {
    throw new Ec2Error('IncompleteSignature', `X-Amz-Expires must be a whole number of seconds from 1 to ${MAX_PRESIGN_EXPIRES_S}, not ${expiresText}`);
  }
  const amzDate = query.get('X-Amz-Date')!;
  return {
    ...parseCredential(query.get('X-Amz-Credential')!),
    signedHeaders: parseSignedHeaders(query.get('X-Amz-SignedHeaders')!),
    signature: query.get('X-Amz-Signature')!,
    amzDate,
    signedAt: parseAmzDate(amzDate, 'X-Amz-Date'),
    expiresSeconds,
  };
}

function parseCredential(credential: string): Pick<SigV4Claim, 'accessKeyId' | 'scopeDate' | 'region' | 'service'> {
  const parts = credential.split('/');
  if (parts.length !== 5 || parts.some((p) => p === '') || parts[4] !== 'aws4_request') {
    throw new Ec2Error('IncompleteSignature', `Credential ${credential} is malformed; expected ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request`);
  }
  const [accessKeyId, scopeDate, region, service] = parts;
  return { accessKeyId, scopeDate, region, service };
}

function parseSignedHeaders(list: string): string[] {
  const names = list.split(';').map((h) => h.trim().toLowerCase());
  if (names.some((n) => n === '')) throw new Ec2Error('IncompleteSignature', `SignedHeaders ${list} is malformed`);
  if (!names.includes('host')) throw new Ec2Error('IncompleteSignature', 'SignedHeaders must include host');
  return names;
}

function checkScope(claim: SigV4Claim, service: string): void {
  if (claim.service !== service) {
    throw signatureMismatch(`The credential scope names service '${claim.service}'; requests to this endpoint are signed for service '${service}'.`);
  }
  if (claim.scopeDate !== claim.amzDate.slice(0, 8)) {
    throw signatureMismatch(`The credential scope date ${claim.scopeDate} is not the date of the request timestamp ${claim.amzDate}.`);
  }
  // Any region is accepted: clients sign with whatever region they were configured with, and
  // this service answers for one region regardless of the name the client chose.
}

const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/**
 * A timestamp whose every field is in range: Date.UTC would silently roll month 13 or second 99
 * over into a later date, and a signature over one string must not be read as another time.
 */
function parseAmzDate(text: string, what: string): Date {
  const m = AMZ_DATE.exec(text);
  const date = m ? exactUtcDate(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6]) : undefined;
  if (!date) throw new Ec2Error('IncompleteSignature', `${what} ${text} is not a valid timestamp of the form YYYYMMDDTHHMMSSZ`);
  return date;
}

/** Old clients may sign with the Date header instead of X-Amz-Date. */
function dateHeaderAsAmzDate(raw: RawRequest): string {
  const date = headerValue(raw.headers, 'date');
  const parsed = date ? new Date(date) : undefined;
  if (!parsed || Number.isNaN(parsed.getTime())) {
    throw new Ec2Error('IncompleteSignature', 'A SigV4 Authorization header needs an X-Amz-Date or a Date header');
  }
  return toAmzDate(parsed);
}

export const toAmzDate = (date: Date) => date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');

/**
 * The payload hash a signer may have used. A declared x-amz-content-sha256 must match the body,
 * or the body could be swapped under a valid signature; UNSIGNED-PAYLOAD is accepted only with
 * no body, because the body carries the EC2 parameters. Presigned URLs from botocore sign
 * UNSIGNED-PAYLOAD, those from the JS SDK the hash of the empty body.
 */
function acceptablePayloadHashes(raw: RawRequest, presigned: boolean): string[] {
  const bodyHash = sha256Hex(raw.body);
  const declared = headerValue(raw.headers, 'x-amz-content-sha256')?.trim();
  if (declared === UNSIGNED_PAYLOAD || (presigned && declared === undefined)) {
    if (raw.body.length > 0) {
      if (declared === UNSIGNED_PAYLOAD) throw new Ec2Error('IncompleteSignature', 'UNSIGNED-PAYLOAD is not accepted for a request with a body: the body carries parameters that must be signed');
      return [bodyHash];
    }
    return declared === UNSIGNED_PAYLOAD ? [UNSIGNED_PAYLOAD] : [bodyHash, UNSIGNED_PAYLOAD];
  }
  if (declared !== undefined && declared.toLowerCase() !== bodyHash) {
    throw signatureMismatch('The x-amz-content-sha256 header is not the SHA-256 of the request body.');
  }
  return [declared ?? bodyHash];
}

/**
 * Query string as (decoded name, decoded value) pairs, in wire order, decoded exactly as the
 * request parser decodes the parameters the actions act on (application/x-www-form-urlencoded:
 * `+` is a space). The signature is then checked over the values acted on: a client that signed
 * `a%2Bb` and sent `a+b` gets SignatureDoesNotMatch, not a description of `a b`.
 */
function queryPairs(rawQuery: string): [string, string][] {
  if (!rawQuery) return [];
  return [...new URLSearchParams(rawQuery)];
}

/** Path normalized and encoded as for every service but S3: dot segments removed, encoded again. */
export function canonicalUri(path: string): string {
  const segments: string[] = [];
  for (const segment of (path || '/').split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  const trailing = segments.length > 0 && path.endsWith('/') ? '/' : '';
  return uriEncode(`/${segments.join('/')}${trailing}`).replace(/%2F/g, '/');
}

export function canonicalQuery(rawQuery: string, presigned: boolean): string {
  return queryPairs(rawQuery)
    .filter(([name]) => !(presigned && name === 'X-Amz-Signature'))
    .map(([name, value]) => [uriEncode(name), uriEncode(value)])
    .sort(([an, av], [bn, bv]) => (an < bn ? -1 : an > bn ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

export function canonicalRequest(raw: RawRequest, signedHeaders: string[], payloadHash: string, presigned: boolean, profile: SigV4Profile = EC2_SIGV4_PROFILE): string {
  const headers = signedHeaders.map((name) => `${name}:${(headerValue(raw.headers, name) ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  return [raw.method, profile.canonicalUri(raw.path), canonicalQuery(raw.rawQuery, presigned), headers, signedHeaders.join(';'), payloadHash].join('\n');
}

function stringToSign(claim: SigV4Claim, canonical: string): string {
  const scope = `${claim.scopeDate}/${claim.region}/${claim.service}/aws4_request`;
  return [SIGV4_ALGORITHM, claim.amzDate, scope, sha256Hex(canonical)].join('\n');
}

/**
 * Signing keys already derived: a key serves one secret for one day, region and service, so a
 * client's every request that day would otherwise repeat the same four HMACs. Keyed by the secret
 * itself, a changed or deleted secret never finds an old key; the map is emptied when it is full.
 */
const derivedKeys = new Map<string, Buffer>();
const MAX_DERIVED_KEYS = 1024;

function cachedSigningKey(secret: string, date: string, region: string, service: string): Buffer {
  // Region and service come from the request: JSON keeps any text in them from posing as another secret's id.
  const id = JSON.stringify([secret, date, region, service]);
  let key = derivedKeys.get(id);
  if (!key) {
    if (derivedKeys.size >= MAX_DERIVED_KEYS) derivedKeys.clear();
    key = signingKey(secret, date, region, service);
    derivedKeys.set(id, key);
  }
  return key;
}

export function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  const kDate = hmac(`AWS4${secret}`, date);
  const kRegion = hmac(kDate, region);
  const kService = hmac(kRegion, service);
  return hmac(kService, 'aws4_request');
}
