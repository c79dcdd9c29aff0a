/**
 * Real EC2 clients pointed at a gateway: boto3 (through python3), @aws-sdk/client-ec2 and the
 * AWS CLI. Tests judge wire compatibility by what these clients parse, not by our own XML.
 */
import { execFile, spawn } from 'child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { EC2Client } from '@aws-sdk/client-ec2';

export interface Ec2Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  /** Region the client signs for; us-east-1 when not given. */
  region?: string;
}

/** An EC2 error as a real client reported it. */
export class Ec2ClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly httpStatus?: number,
    readonly requestId?: string,
  ) {
    super(message);
    this.name = 'Ec2ClientError';
  }
}

/**
 * Python run by the boto3 helpers: a batch of calls in one process (importing boto3 and loading
 * the EC2 model costs about a second), one JSON line out with a result per call.
 */
const BOTO3_SCRIPT = String.raw`
import json, sys
import boto3
from botocore import UNSIGNED, xform_name
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError

job = json.load(sys.stdin)
session = boto3.session.Session()

def client_for(call):
    creds = call.get("creds")
    config = Config(
        retries={"total_max_attempts": 1},
        parameter_validation=False,  # let the server, not botocore, judge the parameters
        signature_version=UNSIGNED if creds is None else call.get("signatureVersion"),
        connect_timeout=10, read_timeout=60,
    )
    return session.client(
        "ec2", endpoint_url=job["endpoint"], config=config, verify=job.get("caBundle"),
        region_name=(creds or {}).get("region") or "us-east-1",
        aws_access_key_id=creds["accessKeyId"] if creds else "unused",
        aws_secret_access_key=creds["secretAccessKey"] if creds else "unused",
    )

def run(call):
    client = client_for(call)
    try:
        if call.get("waiter"):
            client.get_waiter(call["waiter"]).wait(**call["params"], WaiterConfig=call["waiterConfig"])
            return {"ok": True, "response": None}
        if call.get("presignExpiresIn"):
            return {"ok": True, "url": client.generate_presigned_url(
                xform_name(call["operation"]), Params=call["params"], ExpiresIn=call["presignExpiresIn"])}
        return {"ok": True, "response": getattr(client, xform_name(call["operation"]))(**call["params"])}
    except WaiterError as e:
        return {"ok": False, "code": "WaiterError", "message": str(e)}
    except ClientError as e:
        err = e.response.get("Error", {})
        meta = e.response.get("ResponseMetadata", {})
        return {"ok": False, "code": err.get("Code"), "message": err.get("Message"),
                "httpStatus": meta.get("HTTPStatusCode"), "requestId": meta.get("RequestId")}

print(json.dumps([run(call) for call in job["calls"]], default=str))
`;

let scriptPath: string | undefined;
function boto3Script(): string {
  if (!scriptPath) {
    scriptPath = join(mkdtempSync(join(tmpdir(), 'ec2-boto3-')), 'call.py');
    writeFileSync(scriptPath, BOTO3_SCRIPT);
  }
  return scriptPath;
}

/** Environment without the user's AWS config, so only what a test passes reaches the client. */
function isolatedEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('AWS_')) env[name] = value;
  return { ...env, AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null', AWS_EC2_METADATA_DISABLED: 'true' };
}

/** caBundle: a PEM file of the CAs boto3 trusts for an https endpoint (its verify=path); else its own bundle. */
function runBoto3(endpoint: string, calls: object[], caBundle?: string): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [boto3Script()], { env: isolatedEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = stdout.trim().split('\n').pop();
      if (code !== 0 || !line) return reject(new Error(`boto3 script failed (exit ${code}): ${stderr.trim()}`));
      resolve(JSON.parse(line));
    });
    child.stdin.end(JSON.stringify({ endpoint, calls, caBundle }));
  });
}

export interface Boto3CallSpec {
  /** null sends the request unsigned. */
  creds: Ec2Credentials | null;
  /** API name, e.g. 'ImportVolume'. */
  operation: string;
  /** botocore-shaped parameters (e.g. { Image: { Format, Bytes, ImportManifestUrl } }). */
  params?: Record<string, unknown>;
  signatureVersion?: string;
}

/** What boto3 made of one call: the parsed response, or the EC2 error it raised. */
export type Boto3Outcome = { ok: true; response: any } | { ok: false; error: Ec2ClientError };

/** Runs several calls in one python process, in order; much faster than one boto3Call each. */
export async function boto3Calls(endpoint: string, calls: Boto3CallSpec[], options: { caBundle?: string } = {}): Promise<Boto3Outcome[]> {
  const results = await runBoto3(
    endpoint,
    calls.map((c) => ({ creds: c.creds, operation: c.operation, params: c.params ?? {}, signatureVersion: c.signatureVersion ?? null })),
    options.caBundle,
  );
  return results.map((out) => (out.ok ? { ok: true, response: out.response } : { ok: false, error: new Ec2ClientError(out.code, out.message, out.httpStatus, out.requestId) }));
}

/**
 * Calls `operation` with botocore-shaped `params`; resolves to the parsed response (with
 * ResponseMetadata), rejects with Ec2ClientError. `creds` null sends the request unsigned.
 * Parameter validation is off, so bad input reaches the server.
 */
export async function boto3Call(
  endpoint: string,
  creds: Ec2Credentials | null,
  operation: string,
  params: Record<string, unknown> = {},
  options: { signatureVersion?: string; caBundle?: string } = {},
): Promise<any> {
  const [outcome] = await boto3Calls(endpoint, [{ creds, operation, params, signatureVersion: options.signatureVersion }], { caBundle: options.caBundle });
  if (!outcome.ok) throw outcome.error;
  return outcome.response;
}

/** A SigV4 presigned URL made by botocore (generate_presigned_url) for `operation`. */
export async function boto3PresignedUrl(endpoint: string, creds: Ec2Credentials, operation: string, params: Record<string, unknown> = {}, expiresIn = 300): Promise<string> {
  const [out] = await runBoto3(endpoint, [{ creds, operation, params, presignExpiresIn: expiresIn, signatureVersion: null }]);
  if (!out.ok) throw new Ec2ClientError(out.code, out.message, out.httpStatus);
  return out.url;
}

/**
 * Runs a botocore waiter (e.g. 'conversion_task_completed') until it succeeds; rejects with
 * Ec2ClientError code 'WaiterError' when it gives up or sees a failure state.
 */
export async function boto3Wait(
  endpoint: string,
  creds: Ec2Credentials,
  waiter: string,
  params: Record<string, unknown>,
  config: { delaySeconds?: number; maxAttempts?: number } = {},
): Promise<void> {
  const [out] = await runBoto3(endpoint, [{ creds, operation: '', params, waiter, waiterConfig: { Delay: config.delaySeconds ?? 1, MaxAttempts: config.maxAttempts ?? 60 } }]);
  if (!out.ok) throw new Ec2ClientError(out.code, out.message, out.httpStatus);
}

/** An @aws-sdk/client-ec2 client that sends to `endpoint` and never retries. */
export function sdkClient(endpoint: string, creds: Ec2Credentials): EC2Client {
  return new EC2Client({
    endpoint,
    region: creds.region ?? 'us-east-1',
    credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey },
    maxAttempts: 1,
  });
}

/** The AWS CLI to test with: /usr/bin/aws (v2) when installed, else `aws` on PATH, else undefined. */
export function awsCliPath(): string | undefined {
  if (existsSync('/usr/bin/aws')) return '/usr/bin/aws';
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'aws'))) return join(dir, 'aws');
  }
  return undefined;
}

/** Runs `aws ec2 <args> --endpoint-url endpoint --output json`; resolves with exit code and output. */
export function awsCli(cli: string, endpoint: string, creds: Ec2Credentials, args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const env = {
    ...isolatedEnv(),
    AWS_ACCESS_KEY_ID: creds.accessKeyId,
    AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
    AWS_DEFAULT_REGION: creds.region ?? 'us-east-1',
    AWS_MAX_ATTEMPTS: '1',
    AWS_PAGER: '',
  };
  return new Promise((resolve) => {
    execFile(cli, ['ec2', ...args, '--endpoint-url', endpoint, '--output', 'json'], { env, timeout: 60000 }, (err, stdout, stderr) => {
      const exitCode = err ? (typeof (err as any).code === 'number' ? (err as any).code : 1) : 0;
      resolve({ exitCode, stdout, stderr });
    });
  });
}

/**
 * Sends a Query request signed by @smithy/signature-v4 (the SDK's own signer) and returns the
 * raw answer, for checks the SDKs cannot make: the XML itself, actions no SDK can send.
 * `creds` null sends it unsigned.
 */
export async function signedQuery(
  endpoint: string,
  creds: Ec2Credentials | null,
  params: Record<string, string>,
  options: { method?: 'GET' | 'POST'; presign?: boolean } = {},
): Promise<{ status: number; headers: Headers; body: string }> {
  const { SignatureV4 } = await import('@smithy/signature-v4');
  const { Sha256 } = await import('@aws-crypto/sha256-js');
  const url = new URL(endpoint);
  const method = options.method ?? 'POST';
  const form = new URLSearchParams({ Version: '2016-11-15', ...params }).toString().replace(/\+/g, '%20');
  const request = {
    method,
    protocol: url.protocol,
    hostname: url.hostname,
    port: Number(url.port) || undefined,
    path: url.pathname,
    query: method === 'GET' ? { Version: '2016-11-15', ...params } : {},
    headers: { host: url.host, ...(method === 'POST' ? { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' } : {}) } as Record<string, string>,
    body: method === 'POST' ? form : undefined,
  };
  let signed: typeof request = request;
  if (creds) {
    const signer = new SignatureV4({ service: 'ec2', region: creds.region ?? 'us-east-1', credentials: creds, sha256: Sha256 });
    signed = (options.presign ? await signer.presign(request as any, { expiresIn: 300 }) : await signer.sign(request as any)) as any;
  }
  const query = Object.entries(signed.query ?? {})
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&');
  const headers = { ...signed.headers };
  delete headers.host;
  const response = await fetch(`${url.origin}${url.pathname}${query ? `?${query}` : ''}`, { method, headers, body: signed.body });
  return { status: response.status, headers: response.headers, body: await response.text() };
}
