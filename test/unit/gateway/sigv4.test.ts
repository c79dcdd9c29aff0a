/** SigV4 verification judged against the SDK's own signer, not only against our own vectors. */
import { StaticAccountDirectory } from '../../../gateway/accounts';
import { Ec2Error } from '../../../gateway/errors';
import { parseQueryRequest, type RawRequest } from '../../../gateway/query-request';
import { hmac, sha256Hex } from '../../../gateway/signing-common';
import { canonicalQuery, canonicalRequest, canonicalUri, signingKey, verifySigV4 } from '../../../gateway/sigv4';
import { presignWithSmithy, signWithSmithy } from './signed-requests';

const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const accounts = new StaticAccountDirectory([{ accountId: '123456789012', accessKeyId: 'AKIDTEST', secretAccessKey: SECRET }]);
const FORM = 'Action=DescribeConversionTasks&Version=2016-11-15&ConversionTaskId.1=import-vol-1234abcd';

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e) => e,
  );
  expect(error).toBeInstanceOf(Ec2Error);
  return (error as Ec2Error).code;
}

describe('Authorization header', () => {
  test.each([
    ['POST with a form body', { body: FORM }],
    ['GET with query parameters that need encoding', { method: 'GET' as const, query: { Action: 'ImportVolume', Description: "a b+c/d~e*f'(g)!é€", 'Image.ImportManifestUrl': 'http://h:9/b/k?x=1&y=2' } }],
    ['extra signed headers with odd whitespace', { body: FORM, headers: { 'x-custom-thing': '  two   spaces\tand tab  ', 'X-Amz-Target': 'none' } }],
    ['a path with segments to encode', { method: 'GET' as const, path: '/api/v%201/./x/../', query: { Action: 'DescribeConversionTasks' } }],
    ['an empty body', { method: 'POST' as const, query: { Action: 'DescribeConversionTasks' } }],
  ])('accepts a request signed by @smithy/signature-v4: %s', async (_name, unsigned) => {
    const raw = await signWithSmithy(unsigned, SECRET);
    await expect(verifySigV4(raw, accounts)).resolves.toEqual({ accountId: '123456789012', accessKeyId: 'AKIDTEST' });
  });

  test('accepts any region in the credential scope, and a session token header', async () => {
    const raw = await signWithSmithy({ body: FORM }, SECRET, { region: 'eu-central-7', sessionToken: 'token/with+chars' });
    expect(raw.headers['x-amz-security-token']).toBe('token/with+chars');
    await expect(verifySigV4(raw, accounts)).resolves.toMatchObject({ accountId: '123456789012' });
  });

  test('accepts a declared x-amz-content-sha256 that matches the body', async () => {
    const { createHash } = await import('crypto');
    const raw = await signWithSmithy({ body: FORM, headers: { 'x-amz-content-sha256': createHash('sha256').update(FORM).digest('hex') } }, SECRET);
    await expect(verifySigV4(raw, accounts)).resolves.toMatchObject({ accountId: '123456789012' });
  });

  test('a wrong secret → SignatureDoesNotMatch', async () => {
    const raw = await signWithSmithy({ body: FORM }, 'not-the-secret');
    expect(await codeOf(verifySigV4(raw, accounts))).toBe('SignatureDoesNotMatch');
  });

  test('a changed body, parameter, header or method → SignatureDoesNotMatch', async () => {
    const raw = await signWithSmithy({ body: FORM, headers: { 'x-custom-thing': 'a' } }, SECRET);
    const variants: RawRequest[] = [
      { ...raw, body: Buffer.from(FORM.replace('1234abcd', '1234abce')) },
      { ...raw, rawQuery: 'DryRun=true' },
      { ...raw, headers: { ...raw.headers, 'x-custom-thing': 'b' } },
      { ...raw, method: 'GET' },
      { ...raw, path: '/other' },
    ];
    for (const variant of variants) expect(await codeOf(verifySigV4(variant, accounts))).toBe('SignatureDoesNotMatch');
  });

  test('a body swapped under a declared x-amz-content-sha256 → SignatureDoesNotMatch', async () => {
    const { createHash } = await import('crypto');
    const raw = await signWithSmithy({ body: FORM, headers: { 'x-amz-content-sha256': createHash('sha256').update(FORM).digest('hex') } }, SECRET);
    expect(await codeOf(verifySigV4({ ...raw, body: Buffer.from('Action=ImportVolume') }, accounts))).toBe('SignatureDoesNotMatch');
  });

  test('UNSIGNED-PAYLOAD with a body → IncompleteSignature (the body holds the parameters)', async () => {
    const raw = await signWithSmithy({ body: FORM, headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } }, SECRET);
    expect(await codeOf(verifySigV4(raw, accounts))).toBe('IncompleteSignature');
  });

  test('an unknown access key → AuthFailure', async () => {
    const raw = await signWithSmithy({ body: FORM }, SECRET, { accessKeyId: 'AKIDNOBODY' });
    expect(await codeOf(verifySigV4(raw, accounts))).toBe('AuthFailure');
  });

  test('a key whose secret changed: requests signed with the old secret are refused from the next one on (derived keys are kept per secret)', async () => {
    let secret = SECRET;
    const rotating = { lookup: async () => ({ accountId: '123456789012', secretAccessKey: secret }) };
    const old = await signWithSmithy({ body: FORM }, SECRET);
    await expect(verifySigV4(old, rotating)).resolves.toMatchObject({ accountId: '123456789012' });
    secret = 'a-new-secret-for-the-same-key-id-000000000';
    expect(await codeOf(verifySigV4(old, rotating))).toBe('SignatureDoesNotMatch');
    await expect(verifySigV4(await signWithSmithy({ body: FORM }, secret), rotating)).resolves.toMatchObject({ accountId: '123456789012' });
  });

  test('a timestamp more than 15 minutes off → RequestExpired, either way; 14 minutes is fine', async () => {
    const signingDate = new Date('2026-03-01T12:00:00Z');
    const raw = await signWithSmithy({ body: FORM }, SECRET, { signingDate });
    const at = (minutes: number) => ({ now: new Date(signingDate.getTime() + minutes * 60000) });
    expect(await codeOf(verifySigV4(raw, accounts, at(16)))).toBe('RequestExpired');
    expect(await codeOf(verifySigV4(raw, accounts, at(-16)))).toBe('RequestExpired');
    await expect(verifySigV4(raw, accounts, at(14))).resolves.toBeDefined();
    await expect(verifySigV4(raw, accounts, at(-14))).resolves.toBeDefined();
  });

  test('signed for another service → SignatureDoesNotMatch naming it', async () => {
    const raw = await signWithSmithy({ body: FORM }, SECRET, { service: 's3' });
    await expect(verifySigV4(raw, accounts)).rejects.toMatchObject({ code: 'SignatureDoesNotMatch', message: expect.stringContaining("'s3'") });
  });

  test('malformed Authorization headers → IncompleteSignature', async () => {
    const raw = await signWithSmithy({ body: FORM }, SECRET);
    const auth = raw.headers.authorization as string;
    const broken = [
      auth.replace(/, Signature=[0-9a-f]+/, ''),
      auth.replace(/SignedHeaders=[^,]+/, 'SignedHeaders=content-type;x-amz-date'),
      auth.replace(/Credential=[^,]+/, 'Credential=AKIDTEST/20260101/us-east-1'),
      auth.replace('AWS4-HMAC-SHA256', 'AWS4-HMAC-SHA512'),
    ];
    for (const authorization of broken) {
      expect(await codeOf(verifySigV4({ ...raw, headers: { ...raw.headers, authorization } }, accounts))).toBe('IncompleteSignature');
    }
    const { ['x-amz-date']: _date, ...noDate } = raw.headers;
    expect(await codeOf(verifySigV4({ ...raw, headers: noDate }, accounts))).toBe('IncompleteSignature');
  });

  test('a signed header missing from the request → IncompleteSignature', async () => {
    const raw = await signWithSmithy({ body: FORM, headers: { 'x-custom-thing': 'a' } }, SECRET);
    const { ['x-custom-thing']: _gone, ...headers } = raw.headers;
    expect(await codeOf(verifySigV4({ ...raw, headers }, accounts))).toBe('IncompleteSignature');
  });
});

describe('presigned query string', () => {
  test('accepts a GET presigned by @smithy/signature-v4', async () => {
    const raw = await presignWithSmithy({ method: 'GET', query: { Action: 'DescribeConversionTasks', 'ConversionTaskId.1': 'import-vol-1234abcd' } }, SECRET);
    expect(raw.rawQuery).toContain('X-Amz-Signature=');
    expect(raw.headers.authorization).toBeUndefined();
    await expect(verifySigV4(raw, accounts)).resolves.toMatchObject({ accountId: '123456789012' });
  });

  test('a changed parameter → SignatureDoesNotMatch', async () => {
    const raw = await presignWithSmithy({ method: 'GET', query: { Action: 'DescribeConversionTasks' } }, SECRET);
    const tampered = { ...raw, rawQuery: raw.rawQuery.replace('DescribeConversionTasks', 'ImportVolume') };
    expect(await codeOf(verifySigV4(tampered, accounts))).toBe('SignatureDoesNotMatch');
    expect(await codeOf(verifySigV4({ ...raw, rawQuery: `${raw.rawQuery}&DryRun=true` }, accounts))).toBe('SignatureDoesNotMatch');
  });

  test('a body added to a presigned request is not covered → SignatureDoesNotMatch', async () => {
    const raw = await presignWithSmithy({ method: 'POST', query: { Action: 'DescribeConversionTasks' } }, SECRET);
    expect(await codeOf(verifySigV4({ ...raw, body: Buffer.from('Action=ImportVolume') }, accounts))).toBe('SignatureDoesNotMatch');
  });

  test('expires after X-Amz-Expires; valid just before', async () => {
    const signingDate = new Date('2026-03-01T12:00:00Z');
    const raw = await presignWithSmithy({ method: 'GET', query: { Action: 'DescribeConversionTasks' } }, SECRET, { signingDate, expiresIn: 3600 });
    await expect(verifySigV4(raw, accounts, { now: new Date(signingDate.getTime() + 3599_000) })).resolves.toBeDefined();
    expect(await codeOf(verifySigV4(raw, accounts, { now: new Date(signingDate.getTime() + 3601_000) }))).toBe('RequestExpired');
    expect(await codeOf(verifySigV4(raw, accounts, { now: new Date(signingDate.getTime() - 20 * 60_000) }))).toBe('RequestExpired');
  });

  test('missing presign fields → IncompleteSignature', async () => {
    const raw = await presignWithSmithy({ method: 'GET', query: { Action: 'DescribeConversionTasks' } }, SECRET);
    const withoutExpires = raw.rawQuery.split('&').filter((p) => !p.startsWith('X-Amz-Expires=')).join('&');
    expect(await codeOf(verifySigV4({ ...raw, rawQuery: withoutExpires }, accounts))).toBe('IncompleteSignature');
    const hugeExpires = raw.rawQuery.replace(/X-Amz-Expires=\d+/, 'X-Amz-Expires=999999999');
    expect(await codeOf(verifySigV4({ ...raw, rawQuery: hugeExpires }, accounts))).toBe('IncompleteSignature');
  });
});

describe('canonical pieces (the AWS documentation example)', () => {
  // From the SigV4 documentation's worked example for IAM ListUsers.
  test('derived signing key', () => {
    expect(signingKey('wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', '20150830', 'us-east-1', 'iam').toString('hex')).toBe(
      'c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9',
    );
  });

  test('query sorted by encoded name, values RFC 3986-encoded', () => {
    expect(canonicalQuery('b=2&a=x%20y&A=1&a=%2A', false)).toBe('A=1&a=%2A&a=x%20y&b=2');
    expect(canonicalQuery('X-Amz-Signature=abc&Action=X', true)).toBe('Action=X');
  });

  test('path normalized and encoded', () => {
    expect(canonicalUri('')).toBe('/');
    expect(canonicalUri('/a/./b/../c/')).toBe('/a/c/');
    expect(canonicalUri('/a%20b')).toBe('/a%2520b');
  });
});

describe('the value acted on is the value signed (issue 11, item 8)', () => {
  const query = { Action: 'DescribeConversionTasks', Description: 'a+b' };

  test.each([
    ['presigned', presignWithSmithy],
    ['Authorization header', signWithSmithy],
  ])('%s: signed Description=a%%2Bb, sent as a+b (which the parser reads as "a b") → SignatureDoesNotMatch', async (_name, sign) => {
    const raw = await sign({ method: 'GET', query }, SECRET);
    expect(raw.rawQuery).toContain('Description=a%2Bb');
    await expect(verifySigV4(raw, accounts)).resolves.toBeDefined();
    expect(parseQueryRequest(raw).params.string('Description')).toBe('a+b');
    const sentAsPlus = { ...raw, rawQuery: raw.rawQuery.replace('Description=a%2Bb', 'Description=a+b') };
    expect(parseQueryRequest(sentAsPlus).params.string('Description')).toBe('a b');
    expect(await codeOf(verifySigV4(sentAsPlus, accounts))).toBe('SignatureDoesNotMatch');
  });

  test('signed "a b" (a%20b), sent as a+b: the same value, accepted, and acted on as "a b"', async () => {
    const raw = await presignWithSmithy({ method: 'GET', query: { ...query, Description: 'a b' } }, SECRET);
    const sentAsPlus = { ...raw, rawQuery: raw.rawQuery.replace('Description=a%20b', 'Description=a+b') };
    expect(sentAsPlus.rawQuery).toContain('Description=a+b');
    await expect(verifySigV4(sentAsPlus, accounts)).resolves.toBeDefined();
    expect(parseQueryRequest(sentAsPlus).params.string('Description')).toBe('a b');
  });

  test('malformed percent sequences are canonicalised as the parser decodes them', async () => {
    const raw = await presignWithSmithy({ method: 'GET', query: { Action: 'DescribeConversionTasks', Description: '%zz' } }, SECRET);
    await expect(verifySigV4(raw, accounts)).resolves.toBeDefined();
    // Sent undecodable ('%zz' raw instead of '%25zz'): the parser keeps '%zz', the same value.
    const rawPercent = { ...raw, rawQuery: raw.rawQuery.replace('Description=%25zz', 'Description=%zz') };
    expect(parseQueryRequest(rawPercent).params.string('Description')).toBe('%zz');
    await expect(verifySigV4(rawPercent, accounts)).resolves.toBeDefined();
  });
});

describe('X-Amz-Date fields must be in range (issue 11, item 8)', () => {
  /** Re-signs a presigned request for another X-Amz-Date with our own canonicalisation. */
  function resignedFor(raw: RawRequest, amzDate: string): RawRequest {
    const day = amzDate.slice(0, 8);
    const rawQuery = raw.rawQuery
      .replace(/X-Amz-Date=\d{8}T\d{6}Z/, `X-Amz-Date=${amzDate}`)
      .replace(/(X-Amz-Credential=AKIDTEST%2F)\d{8}/, `$1${day}`)
      .split('&')
      .filter((p) => !p.startsWith('X-Amz-Signature='))
      .join('&');
    const unsigned = { ...raw, rawQuery };
    const canonical = canonicalRequest(unsigned, ['host'], 'UNSIGNED-PAYLOAD', true);
    const toSign = ['AWS4-HMAC-SHA256', amzDate, `${day}/us-east-1/ec2/aws4_request`, sha256Hex(canonical)].join('\n');
    const signature = hmac(signingKey(SECRET, day, 'us-east-1', 'ec2'), toSign).toString('hex');
    return { ...unsigned, rawQuery: `${rawQuery}&X-Amz-Signature=${signature}` };
  }

  test('a correctly signed request dated 20261399T999999Z is refused, not read as 2027-04-13', async () => {
    const raw = await presignWithSmithy({ method: 'GET', query: { Action: 'DescribeConversionTasks' } }, SECRET, { expiresIn: 3600 });
    const good = resignedFor(raw, '20260301T120000Z');
    await expect(verifySigV4(good, accounts, { now: new Date('2026-03-01T12:01:00Z') })).resolves.toBeDefined();
    const impossible = resignedFor(raw, '20261399T999999Z');
    expect(await codeOf(verifySigV4(impossible, accounts, { now: new Date('2027-04-13T03:46:39Z') }))).toBe('IncompleteSignature');
    for (const date of ['20260230T120000Z', '20260301T240000Z', '20260301T126000Z', '20260301T120060Z', '20260001T120000Z']) {
      expect([date, await codeOf(verifySigV4(resignedFor(raw, date), accounts, { now: new Date('2026-03-01T12:00:00Z') }))]).toEqual([date, 'IncompleteSignature']);
    }
  });
});
