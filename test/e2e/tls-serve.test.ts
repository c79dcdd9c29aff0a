/**
 * Issue 16, TLS: `imaging serve --tls-cert --tls-key` serves the EC2 endpoint and the embedded S3
 * over HTTPS, and `--s3-ca-bundle` makes the service trust the private CA its own S3 endpoint's
 * certificate comes from. The CA and the server certificate are made here with openssl; boto3,
 * told of the CA (verify=path), uploads and imports over TLS to completion, and the converted
 * bytes equal the disk's.
 */
import { execFile } from 'child_process';
import { readFileSync } from 'fs';
import { request as httpRequest } from 'http';
import { join } from 'path';
import { tempDir } from '../helpers/disk-corpus';
import { makeSystemDisk } from '../helpers/guest-images';
import { startServeProcess, type RunningServe } from '../helpers/serve-process';
import { makeTestPki, type TestPki } from '../helpers/test-pki';
import { fileSha256 } from './import-driver';

let dir: string;
let serve: RunningServe | undefined;
let ec2Endpoint: string;
let s3Endpoint: string;
let disk: string;
let pki: TestPki;

beforeAll(async () => {
  dir = tempDir('tls-serve-');
  pki = makeTestPki(dir);
  disk = makeSystemDisk(dir).path; // bootable: the validate stage refuses an image without an OS
  serve = await startServeProcess([
    '--data-dir', join(dir, 'data'), '--port', '0', '--s3-port', '0', '--admin-port', '0',
    '--upload-poll-ms', '200', '--log-level', 'warn', '--tls-cert', pki.cert, '--tls-key', pki.key, '--s3-ca-bundle', pki.ca,
  ], { embeddedS3: true });
  [ec2Endpoint, s3Endpoint] = [serve.ec2, serve.s3!];
}, 90_000);

afterAll(async () => {
  await serve?.stop();
});

/** boto3 in a python process: `job` in as JSON, one JSON object out. */
function boto3(script: string, job: object): Promise<any> {
  return new Promise((resolve, reject) => {
    const child = execFile('python3', ['-c', script], { timeout: 240_000 }, (error, stdout, stderr) => (error ? reject(new Error(stderr || String(error))) : resolve(JSON.parse(stdout))));
    child.stdin!.end(JSON.stringify(job));
  });
}

const IMPORT_OVER_TLS = String.raw`
import hashlib, json, sys, time, boto3
from botocore.config import Config
from botocore.exceptions import SSLError, EndpointConnectionError
job = json.load(sys.stdin)
def client(service, endpoint, key, verify):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", verify=verify,
                        aws_access_key_id=key["accessKeyId"], aws_secret_access_key=key["secretAccessKey"],
                        # botocore's defaults: over https PutObject goes aws-chunked with a CRC32 trailer.
                        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
out = {}
# Without the test CA the certificate is not trusted: this really is TLS with our certificate.
try:
    client("ec2", job["ec2"], job["user"], True).describe_conversion_tasks()
    out["untrusted"] = "accepted"
except (SSLError, EndpointConnectionError) as e:
    out["untrusted"] = "refused: " + type(e).__name__
s3 = client("s3", job["s3"], job["user"], job["ca"])
ec2 = client("ec2", job["ec2"], job["user"], job["ca"])
s3.create_bucket(Bucket="tls-bucket")
with open(job["disk"], "rb") as f:
    s3.put_object(Bucket="tls-bucket", Key="disk.raw", Body=f.read())
task_id = ec2.import_image(DiskContainers=[{"Format": "RAW", "UserBucket": {"S3Bucket": "tls-bucket", "S3Key": "disk.raw"}}])["ImportTaskId"]
deadline = time.time() + 200
while True:
    task = ec2.describe_import_image_tasks(ImportTaskIds=[task_id])["ImportImageTasks"][0]
    if task["Status"] not in ("active", "deleting") or time.time() > deadline:
        break
    time.sleep(0.5)
out["status"] = [task["Status"], task.get("StatusMessage", "")]
out["imageId"] = task.get("ImageId", "")
# The converted disk, read from the image store over TLS with the service's own key.
image = client("s3", job["s3"], job["service"], job["ca"])
keys = [o["Key"] for o in image.list_objects_v2(Bucket="imaging-images", Prefix="images/" + task_id + "/").get("Contents", [])]
out["stored"] = [hashlib.sha256(image.get_object(Bucket="imaging-images", Key=k)["Body"].read()).hexdigest() for k in keys if k.endswith("disk.raw")]
print(json.dumps(out))
`;

test('both endpoints answer https only, with the test certificate', async () => {
  expect(ec2Endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
  expect(s3Endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  // Plain HTTP on the TLS port gets no HTTP answer.
  const port = new URL(ec2Endpoint).port;
  const plain = await new Promise<string>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/', method: 'GET', agent: false }, (res) => resolve(`HTTP ${res.statusCode}`));
    req.on('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code}`));
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
  expect(plain).not.toMatch(/^HTTP 200/);
});

test('boto3 with the test CA (verify=path) uploads and imports over TLS; the stored disk is the file', async () => {
  const data = join(dir, 'data');
  const user = JSON.parse(readFileSync(join(data, 'credentials.json'), 'utf8'));
  const service = JSON.parse(readFileSync(join(data, 'service-s3-key.json'), 'utf8'));
  const out = await boto3(IMPORT_OVER_TLS, { ec2: ec2Endpoint, s3: s3Endpoint, ca: pki.ca, disk, user, service });
  expect(out.untrusted).toMatch(/^refused: /);
  expect(out.status).toEqual(['completed', '']);
  expect(out.imageId).toMatch(/^ami-[0-9a-f]{17}$/);
  expect(out.stored).toEqual([fileSha256(disk)]);
}, 300_000);
