/** SigV2 verification judged against botocore's SigV2Auth signer (run through python3). */
import { execFileSync } from 'child_process';
import { createHmac } from 'crypto';
import { StaticAccountDirectory } from '../../../gateway/accounts';
import { Ec2Error } from '../../../gateway/errors';
import { QueryParams, type RawRequest } from '../../../gateway/query-request';
import { sigV2StringToSign, verifySigV2 } from '../../../gateway/sigv2';
import { uriEncode } from '../../../gateway/signing-common';

const SECRET = 'euca/secret+key';
const accounts = new StaticAccountDirectory([{ accountId: '123456789012', accessKeyId: 'AKIDV2', secretAccessKey: SECRET }]);
const HOST = 'ec2.gateway.test:8773';

/** Signs a POST with botocore's SigV2Auth; returns the form body it would send. */
function botocoreSigV2(params: Record<string, string>, secret = SECRET): string {
  const script = `
import json, sys
from botocore.auth import SigV2Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
job = json.load(sys.stdin)
request = AWSRequest(method="POST", url="http://${HOST}/services/compute", data=dict(job["params"]))
SigV2Auth(Credentials("AKIDV2", job["secret"])).add_auth(request)
print(request.prepare().body)
`;
  return execFileSync('python3', ['-c', script], { input: JSON.stringify({ params, secret }) }).toString().trim();
}

function rawPost(body: string): { raw: RawRequest; params: QueryParams } {
  const raw: RawRequest = { method: 'POST', path: '/services/compute', rawQuery: '', headers: { host: HOST }, body: Buffer.from(body) };
  return { raw, params: new QueryParams(new URLSearchParams(body)) };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e) => e,
  );
  expect(error).toBeInstanceOf(Ec2Error);
  return (error as Ec2Error).code;
}

const EC2_PARAMS = { Action: 'DescribeConversionTasks', Version: '2014-06-15', 'ConversionTaskId.1': 'import-vol-1234abcd', Description: 'a b+c/d~é*' };

test('accepts a request signed by botocore SigV2Auth (HmacSHA256)', async () => {
  const { raw, params } = rawPost(botocoreSigV2(EC2_PARAMS));
  expect(params.string('SignatureMethod')).toBe('HmacSHA256');
  await expect(verifySigV2(raw, params, accounts)).resolves.toEqual({ accountId: '123456789012', accessKeyId: 'AKIDV2' });
});

test('a wrong secret or a changed parameter → SignatureDoesNotMatch', async () => {
  const wrong = rawPost(botocoreSigV2(EC2_PARAMS, 'other'));
  expect(await codeOf(verifySigV2(wrong.raw, wrong.params, accounts))).toBe('SignatureDoesNotMatch');
  const body = botocoreSigV2(EC2_PARAMS).replace('import-vol-1234abcd', 'import-vol-1234abce');
  const changed = rawPost(body);
  expect(await codeOf(verifySigV2(changed.raw, changed.params, accounts))).toBe('SignatureDoesNotMatch');
  const ok = rawPost(botocoreSigV2(EC2_PARAMS));
  expect(await codeOf(verifySigV2({ ...ok.raw, headers: { host: 'other.host:8773' } }, ok.params, accounts))).toBe('SignatureDoesNotMatch');
});

test('HmacSHA1 and Expires, signed per the SigV2 definition', async () => {
  const expires = new Date(Date.now() + 60_000).toISOString();
  const fields: Record<string, string> = { ...EC2_PARAMS, AWSAccessKeyId: 'AKIDV2', SignatureVersion: '2', SignatureMethod: 'HmacSHA1', Expires: expires };
  const query = Object.keys(fields)
    .sort()
    .map((k) => `${uriEncode(k)}=${uriEncode(fields[k])}`)
    .join('&');
  const signature = createHmac('sha1', SECRET).update(`GET\n${HOST}\n/\n${query}`).digest('base64');
  const rawQuery = `${query}&Signature=${encodeURIComponent(signature)}`;
  const raw: RawRequest = { method: 'GET', path: '/', rawQuery, headers: { host: HOST.toUpperCase() }, body: Buffer.alloc(0) };
  const params = new QueryParams(new URLSearchParams(rawQuery));
  expect(sigV2StringToSign(raw, params)).toBe(`GET\n${HOST}\n/\n${query}`);
  await expect(verifySigV2(raw, params, accounts)).resolves.toMatchObject({ accountId: '123456789012' });
  expect(await codeOf(verifySigV2(raw, params, accounts, { now: new Date(Date.now() + 120_000) }))).toBe('RequestExpired');
});

test('a Timestamp more than 15 minutes off → RequestExpired', async () => {
  const { raw, params } = rawPost(botocoreSigV2(EC2_PARAMS));
  expect(await codeOf(verifySigV2(raw, params, accounts, { now: new Date(Date.now() + 16 * 60_000) }))).toBe('RequestExpired');
});

test('unknown key → AuthFailure; wrong version or method → IncompleteSignature', async () => {
  const body = botocoreSigV2(EC2_PARAMS);
  const unknown = rawPost(body.replace('AWSAccessKeyId=AKIDV2', 'AWSAccessKeyId=AKIDNOBODY'));
  expect(await codeOf(verifySigV2(unknown.raw, unknown.params, accounts))).toBe('AuthFailure');
  const v1 = rawPost(body.replace('SignatureVersion=2', 'SignatureVersion=1'));
  expect(await codeOf(verifySigV2(v1.raw, v1.params, accounts))).toBe('IncompleteSignature');
  const md5 = rawPost(body.replace('SignatureMethod=HmacSHA256', 'SignatureMethod=HmacMD5'));
  expect(await codeOf(verifySigV2(md5.raw, md5.params, accounts))).toBe('IncompleteSignature');
  const noTime = rawPost(body.replace(/&?Timestamp=[^&]+/, ''));
  expect(await codeOf(verifySigV2(noTime.raw, noTime.params, accounts))).toBe('MissingParameter');
});

/** A GET signed per the SigV2 definition with the given time fields (HmacSHA256). */
function signedGet(timeFields: Record<string, string>): { raw: RawRequest; params: QueryParams } {
  const fields: Record<string, string> = { ...EC2_PARAMS, AWSAccessKeyId: 'AKIDV2', SignatureVersion: '2', SignatureMethod: 'HmacSHA256', ...timeFields };
  const query = Object.keys(fields)
    .sort()
    .map((k) => `${uriEncode(k)}=${uriEncode(fields[k])}`)
    .join('&');
  const signature = createHmac('sha256', SECRET).update(`GET\n${HOST}\n/\n${query}`).digest('base64');
  const rawQuery = `${query}&Signature=${encodeURIComponent(signature)}`;
  return { raw: { method: 'GET', path: '/', rawQuery, headers: { host: HOST }, body: Buffer.alloc(0) }, params: new QueryParams(new URLSearchParams(rawQuery)) };
}

describe('Expires is capped (issue 11, item 5)', () => {
  const now = new Date('2026-03-01T12:00:00Z');

  test('Expires=2099-01-01 with no Timestamp: a correctly signed request is refused, not replayable for 73 years', async () => {
    const far = signedGet({ Expires: '2099-01-01T00:00:00Z' });
    expect(await codeOf(verifySigV2(far.raw, far.params, accounts, { now }))).toBe('InvalidParameterValue');
  });

  test('Expires up to 15 minutes ahead is accepted; 16 minutes is refused; a past Expires → RequestExpired', async () => {
    const in14 = signedGet({ Expires: '2026-03-01T12:14:00Z' });
    await expect(verifySigV2(in14.raw, in14.params, accounts, { now })).resolves.toMatchObject({ accountId: '123456789012' });
    const in16 = signedGet({ Expires: '2026-03-01T12:16:00Z' });
    expect(await codeOf(verifySigV2(in16.raw, in16.params, accounts, { now }))).toBe('InvalidParameterValue');
    const past = signedGet({ Expires: '2026-03-01T11:59:59Z' });
    expect(await codeOf(verifySigV2(past.raw, past.params, accounts, { now }))).toBe('RequestExpired');
  });

  test('Timestamp and Expires together are refused (AWS: one or the other)', async () => {
    const both = signedGet({ Timestamp: '2026-03-01T12:00:00Z', Expires: '2026-03-01T12:05:00Z' });
    expect(await codeOf(verifySigV2(both.raw, both.params, accounts, { now }))).toBe('InvalidParameter');
  });

  test('times are read exactly: impossible fields refused, offsets honoured, no zone means UTC', async () => {
    for (const bad of ['2026-02-30T12:00:00Z', '2026-03-01T24:00:00Z', '2026-13-01T12:00:00Z', '2026-03-01T12:00:00+25:00', '2026-03-01 12:00:00Z', '2026-03-01T12:00Z']) {
      const r = signedGet({ Timestamp: bad });
      expect([bad, await codeOf(verifySigV2(r.raw, r.params, accounts, { now }))]).toEqual([bad, 'InvalidParameterValue']);
    }
    for (const good of ['2026-03-01T12:00:00', '2026-03-01T12:00:00.123Z', '2026-03-01T13:00:00+01:00', '2026-03-01T07:00:00-05:00']) {
      const r = signedGet({ Timestamp: good });
      await expect(verifySigV2(r.raw, r.params, accounts, { now })).resolves.toMatchObject({ accountId: '123456789012' });
    }
    const offByAnHour = signedGet({ Timestamp: '2026-03-01T12:00:00+01:00' });
    expect(await codeOf(verifySigV2(offByAnHour.raw, offByAnHour.params, accounts, { now }))).toBe('RequestExpired');
  });
});
