/** Pieces shared by the SigV4 and SigV2 verifiers. */
import { createHash, createHmac, timingSafeEqual } from 'crypto';
import type { IncomingHttpHeaders } from 'http';
import { Ec2Error } from './errors';

/** How far a signed timestamp may be from our clock (AWS uses 15 minutes). */
export const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;

/** The account a request was proven to come from. */
export interface Caller {
  accountId: string;
  accessKeyId: string;
}

export interface VerifyOptions {
  now?: Date;
  maxSkewMs?: number;
}

export const sha256Hex = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

export const hmac = (key: string | Buffer, data: string, algorithm: 'sha256' | 'sha1' = 'sha256') =>
  createHmac(algorithm, key).update(data, 'utf8').digest();

/** Compares signatures without leaking, through timing, how much of a guess was right. */
export function signaturesEqual(expected: string, given: string): boolean {
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(given, 'utf8');
  // The expected signature's length is the algorithm's, which everyone knows: only its bytes
  // are secret, and those are compared in constant time.
  return a.length === b.length && timingSafeEqual(a, b);
}

/** RFC 3986 percent-encoding, as AWS signatures require: only A-Z a-z 0-9 - _ . ~ stay as they are. */
export function uriEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The UTC time with exactly these fields, or undefined if any field is out of range. */
export function exactUtcDate(year: number, month: number, day: number, hour: number, minute: number, second: number, ms = 0): Date | undefined {
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second, ms));
  if (Number.isNaN(date.getTime()) || date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return undefined;
  return date;
}

export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(',') : value;
}

export const authFailureUnknownKey = (accessKeyId: string) =>
  new Ec2Error('AuthFailure', `The access key ID ${accessKeyId} is not known to this service; check the credentials your client uses`);

export const signatureMismatch = (detail: string) =>
  new Ec2Error(
    'SignatureDoesNotMatch',
    `The request signature we calculated does not match the signature you provided. Check your secret access key and signing method. ${detail}`.trim(),
  );

export function checkSkew(signedAt: Date, now: Date, maxSkewMs: number): void {
  const skew = signedAt.getTime() - now.getTime();
  if (Math.abs(skew) > maxSkewMs) {
    throw new Ec2Error(
      'RequestExpired',
      `Request timestamp ${signedAt.toISOString()} is more than ${Math.round(maxSkewMs / 60000)} minutes ${skew < 0 ? 'before' : 'after'} the server time ${now.toISOString()}; check your clock`,
    );
  }
}
