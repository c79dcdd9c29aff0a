/**
 * SigV4 judged against botocore's own signer (SigV4Auth for the Authorization header,
 * SigV4QueryAuth for presigned query strings), GET and POST, run through python3: the requests
 * boto3 and the AWS CLI send are accepted, and a wrong secret, a changed body, an expired request
 * and an unknown key are refused with the code EC2 answers.
 */
import { execFileSync } from 'child_process';
import { StaticAccountDirectory } from '../../../gateway/accounts';
import { Ec2Error } from '../../../gateway/errors';
import { parseQueryRequest, type RawRequest } from '../../../gateway/query-request';
import { verifySigV4 } from '../../../gateway/sigv4';

const KEY = 'AKIDBOTOCORE00000001';
const SECRET = 'botocore/secret+KEY/0123456789abcdefABCD';
const HOST = 'ec2.gateway.test:8773';
const accounts = new StaticAccountDirectory([{ accountId: '123456789012', accessKeyId: KEY, secretAccessKey: SECRET }]);

interface Job {
  method: 'GET' | 'POST';
  presign: boolean;
  params: Record<string, string>;
  key?: string;
  secret?: string;
  expires?: number;
}

/** Signs every job with botocore in one python3 run; returns each request as our server would receive it. */
function signWithBotocore(jobs: Job[]): RawRequest[] {
  const script = `
import json, sys
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
out = []
for job in json.load(sys.stdin):
    creds = Credentials(job["key"], job["secret"])
    url = "http://${HOST}/"
    if job["method"] == "GET":
        request = AWSRequest(method="GET", url=url, params=job["params"])
    else:
        request = AWSRequest(method="POST", url=url, data=job["params"],
                             headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    if job["presign"]:
        SigV4QueryAuth(creds, "ec2", "us-east-1", expires=job["expires"]).add_auth(request)
    else:
        SigV4Auth(creds, "ec2", "us-east-1").add_auth(request)
    prepared = request.prepare()
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    out.append({"method": prepared.method, "url": prepared.url, "headers": dict(prepared.headers), "body": body.decode("utf-8")})
print(json.dumps(out))
`;
  const input = JSON.stringify(jobs.map((j) => ({ key: KEY, secret: SECRET, expires: 300, ...j })));
  const signed = JSON.parse(execFileSync('python3', ['-c', script], { input }).toString()) as { method: string; url: string; headers: Record<string, string>; body: string }[];
  return signed.map((s) => {
    const url = new URL(s.url);
    const headers: Record<string, string> = { host: HOST };
    for (const [name, value] of Object.entries(s.headers)) headers[name.toLowerCase()] = value;
    return { method: s.method, path: url.pathname, rawQuery: url.search.replace(/^\?/, ''), headers, body: Buffer.from(s.body, 'utf8') };
  });
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e) => e,
  );
  expect(error).toBeInstanceOf(Ec2Error);
  return (error as Ec2Error).code;
}

const PARAMS = {
  Action: 'DescribeImportImageTasks',
  Version: '2016-11-15',
  'ImportTaskId.1': 'import-ami-0123456789abcdef0',
  'Filters.1.Name': 'task-state',
  'Filters.1.Value.1': 'a b+c/d~e*f\'(g)!é€',
};

const KINDS: [string, Job][] = [
  ['Authorization header, POST', { method: 'POST', presign: false, params: PARAMS }],
  ['Authorization header, GET', { method: 'GET', presign: false, params: PARAMS }],
  ['presigned query, GET', { method: 'GET', presign: true, params: PARAMS }],
  ['presigned query, POST', { method: 'POST', presign: true, params: PARAMS }],
];

let signed: Map<string, { good: RawRequest; wrongSecret: RawRequest; unknownKey: RawRequest; short: RawRequest }>;

beforeAll(() => {
  const jobs = KINDS.flatMap(([, job]) => [job, { ...job, secret: 'not-the-secret' }, { ...job, key: 'AKIDNOBODYKNOWS00001' }, { ...job, expires: 60 }]);
  const raws = signWithBotocore(jobs);
  signed = new Map(KINDS.map(([name], i) => [name, { good: raws[4 * i], wrongSecret: raws[4 * i + 1], unknownKey: raws[4 * i + 2], short: raws[4 * i + 3] }]));
});

describe.each(KINDS)('%s signed by botocore', (name, job) => {
  test('is accepted, and the parameters acted on are the ones signed', async () => {
    const { good } = signed.get(name)!;
    if (job.presign) expect(good.rawQuery).toContain('X-Amz-Signature=');
    else expect(good.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDBOTOCORE00000001\//);
    await expect(verifySigV4(good, accounts)).resolves.toEqual({ accountId: '123456789012', accessKeyId: KEY });
    const parsed = parseQueryRequest(good);
    expect(parsed.action).toBe('DescribeImportImageTasks');
    expect(parsed.params.string('Filters.1.Value.1')).toBe(PARAMS['Filters.1.Value.1']);
  });

  test('a wrong secret → SignatureDoesNotMatch', async () => {
    expect(await codeOf(verifySigV4(signed.get(name)!.wrongSecret, accounts))).toBe('SignatureDoesNotMatch');
  });

  test('a changed parameter or body → SignatureDoesNotMatch', async () => {
    const { good } = signed.get(name)!;
    const changed: RawRequest = good.body.length
      ? { ...good, body: Buffer.from(good.body.toString('utf8').replace('0123456789abcdef0', '0123456789abcdef1')) }
      : { ...good, rawQuery: good.rawQuery.replace('0123456789abcdef0', '0123456789abcdef1') };
    expect(changed).not.toEqual(good);
    expect(await codeOf(verifySigV4(changed, accounts))).toBe('SignatureDoesNotMatch');
    // A body added to a request whose body was empty is not what was signed either.
    if (!good.body.length) expect(await codeOf(verifySigV4({ ...good, body: Buffer.from('Action=ImportVolume') }, accounts))).toBe('SignatureDoesNotMatch');
  });

  test('an expired request → RequestExpired', async () => {
    const { good, short } = signed.get(name)!;
    const later = (ms: number) => new Date(Date.now() + ms);
    if (job.presign) {
      // Signed for 60 s: accepted now, refused two minutes on.
      await expect(verifySigV4(short, accounts)).resolves.toBeDefined();
      expect(await codeOf(verifySigV4(short, accounts, { now: later(120_000) }))).toBe('RequestExpired');
    } else {
      // A signed header is good for 15 minutes either way of our clock.
      expect(await codeOf(verifySigV4(good, accounts, { now: later(16 * 60_000) }))).toBe('RequestExpired');
    }
  });

  test('an unknown access key → AuthFailure', async () => {
    expect(await codeOf(verifySigV4(signed.get(name)!.unknownKey, accounts))).toBe('AuthFailure');
  });
});
