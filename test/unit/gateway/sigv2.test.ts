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
