/**
 * Shared by the end-to-end suites: drives a running service (in-process or distributed) through
 * real clients, and reads back what it stored.
 */
import { createHash } from 'crypto';
import { readFileSync } from 'fs';
import { Agent as HttpsAgent } from 'https';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3_COMPATIBLE_CHECKSUMS } from '../../toolkit/io/object-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { clientContext, type ClientContext } from '../../cli/client-options';
import { uploadImportImage, type ImportVolumeOptions } from '../../cli/commands/import-volume';
import { boto3Call, type Ec2Credentials } from '../helpers/ec2-clients';
import { startService, type RunningService } from '../../cli/serve';
import { resolveSettings, type ServeSettings } from '../../cli/settings';
import { join } from 'path';
import { execFile } from 'child_process';
import { promisify } from 'util';

export interface Endpoints {
  ec2: string;
  s3: string;
  creds: Ec2Credentials;
  /** PEM file of the CA the clients trust for https endpoints (a private test CA). */
  caBundle?: string;
}

export async function clientFor(endpoints: Endpoints): Promise<ClientContext> {
  const ctx = await clientContext({ endpoint: endpoints.ec2, s3Endpoint: endpoints.s3, accessKeyId: endpoints.creds.accessKeyId, secretAccessKey: endpoints.creds.secretAccessKey }, {});
  if (!endpoints.caBundle) return ctx;
  // An https S3 endpoint with a certificate of the test CA: the uploads trust that CA.
  ctx.s3.destroy();
  const httpsAgent = new HttpsAgent({ ca: readFileSync(endpoints.caBundle) });
  return { ...ctx, s3: new S3Client({ endpoint: endpoints.s3, region: ctx.region, forcePathStyle: true, credentials: ctx.credentials, ...S3_COMPATIBLE_CHECKSUMS, requestHandler: { httpsAgent } }) };
}

export const uploadOptions = (bucket: string, extra: Partial<ImportVolumeOptions> = {}): ImportVolumeOptions => ({
  format: 'RAW', bucket, partSizeMiB: 10, expiresSeconds: 3600, progress: false, concurrency: 4, ...extra,
});

export async function upload(endpoints: Endpoints, file: string, bucket: string, extra: Partial<ImportVolumeOptions> = {}) {
  return uploadImportImage(await clientFor(endpoints), file, uploadOptions(bucket, extra));
}

/** Polls DescribeConversionTasks through boto3 until the task leaves `active`. */
export async function waitForTask(endpoints: Endpoints, taskId: string, timeoutMs = 90_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeConversionTasks', { ConversionTaskIds: [taskId] }, { caBundle: endpoints.caBundle });
    const task = out.ConversionTasks[0];
    if (task.State !== 'active' && task.State !== 'cancelling') return task;
    if (Date.now() > deadline) throw new Error(`task ${taskId} still ${task.State} (${task.StatusMessage}) after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Polls DescribeImportImageTasks (or DescribeImportSnapshotTasks) through boto3, as `creds`
 * (default the endpoints' own), until the task is no longer active or deleting; the task.
 */
export async function waitForImportTask(
  endpoints: Endpoints,
  op: 'DescribeImportImageTasks' | 'DescribeImportSnapshotTasks',
  taskId: string,
  options: { creds?: Ec2Credentials; timeoutMs?: number; everyMs?: number } = {},
): Promise<any> {
  const timeoutMs = options.timeoutMs ?? 400_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = await boto3Call(endpoints.ec2, options.creds ?? endpoints.creds, op, { ImportTaskIds: [taskId] }, { caBundle: endpoints.caBundle });
    const task = op === 'DescribeImportImageTasks' ? out.ImportImageTasks[0] : out.ImportSnapshotTasks[0];
    const status = op === 'DescribeImportImageTasks' ? task.Status : task.SnapshotTaskDetail.Status;
    if (!['active', 'deleting'].includes(status)) return task;
    if (Date.now() > deadline) throw new Error(`${taskId} still ${status} (${task.StatusMessage}) after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, options.everyMs ?? 250));
  }
}

export async function objectBytes(s3: S3Client, bucket: string, key: string): Promise<Buffer> {
  const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await res.Body!.transformToByteArray());
}

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

export function fileSha256(path: string): string {
  return sha256(readFileSync(path));
}

/** Puts an object and returns a presigned GET URL for it. */
export async function putWithUrl(s3: S3Client, bucket: string, key: string, body: string | Buffer): Promise<string> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  return getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: 3600 });
}

/** `imaging serve` in-process on free ports with its own data directory under `dir`. */
export async function startTestService(dir: string, overrides: Partial<ServeSettings> = {}): Promise<{ service: RunningService; endpoints: Endpoints }> {
  const service = await startService(
    resolveSettings({ dataDir: join(dir, 'data'), port: '0', s3Port: '0', adminPort: '0', uploadPollMs: '200', logLevel: 'warn', ...overrides }, {}),
    { logToStderr: false },
  );
  return { service, endpoints: { ec2: service.ec2Endpoint, s3: service.s3Endpoint, creds: service.credentials } };
}

const execFileAsync = promisify(execFile);

/** Runs the compiled `imaging` CLI against the service, as a user with its key pair would. */
export function runCli(endpoints: Endpoints, args: string[]): Promise<{ stdout: string; stderr: string }> {
  const env = {
    ...process.env,
    IMAGING_EC2_ENDPOINT: endpoints.ec2,
    IMAGING_S3_ENDPOINT: endpoints.s3,
    AWS_ACCESS_KEY_ID: endpoints.creds.accessKeyId,
    AWS_SECRET_ACCESS_KEY: endpoints.creds.secretAccessKey,
  };
  return execFileAsync('node', [join(__dirname, '../../dist/cli/main.js'), ...args], { env });
}
