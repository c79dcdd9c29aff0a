/**
 * The chart's contract, proven by running it: the chart is rendered (helm template, deployment
 * mode and knative mode), each workload's command and environment are taken from the rendered
 * objects (ConfigMaps, Secrets and env entries resolved as the kubelet does, under the image's own
 * ENV), and every function is started as its own local process with exactly that environment;
 * only the service host names and the listening ports are substituted (the local nats-server,
 * jongodb and s3rver; a free port per process, as each pod has its own). An import then goes
 * through the gateway to completion with boto3. stack.yml (OpenFaaS) is run the same way.
 *
 * Every process records the environment variables it reads (test/helpers/env-read-recorder.js):
 * a variable the chart sets that its process never reads fails the test, and so does a setting
 * the process requires (config/settings-schema.ts) that the chart does not set.
 *
 * Files the chart mounts from Secrets (the gateway's TLS pair, the S3 CA bundle, the cloud key)
 * are written where each process finds them, from the rendered Secrets or from the Secrets the
 * operator made beforehand (OPERATOR_SECRETS), and the settings naming them point there. The
 * deployment-mode run turns them all on: the gateway serves HTTPS with a certificate of a test CA
 * made by openssl (boto3 is told of the CA), every workload reaches S3 over TLS through that CA
 * (a TLS proxy in front of s3rver), the decrypt stage opens an EC2 bundle with the cloud key, the
 * export stage bundles an instance (BundleInstance) signed and encrypted with it, and the
 * per-account task cap and storage quota answer with their errors.
 *
 * In knative mode the test stands in for the Knative Broker: for each rendered Trigger it
 * delivers the events of the Trigger's type from the pipeline's JetStream stream to the stage's
 * HTTP port, as a JetStream-channel Broker does.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { basename, join } from 'path';
import { execFileSync } from 'child_process';
import * as jsYaml from 'js-yaml';
import { HTTP } from 'cloudevents';
import { JetStreamBus } from '../../events/jetstream-bus';
import { SETTINGS, type SettingReader, type SettingSpec } from '../../config/settings-schema';
import { STAGE_NAMES } from '../../pipeline/table';
import { makeRawDisk, seededBytes, tempDir } from '../helpers/disk-corpus';
import { makeKeyPair, makeOpensslBundle, type KeyPair } from '../helpers/euca-bundle';
import { makeTestPki, startTlsProxy, type RunningTlsProxy, type TestPki } from '../helpers/test-pki';
import { openTaskStore } from '../../tasks/open-store';
import { addSigningCertificate } from '../../tasks/signing-certificates';
import { PutObjectCommand, CreateBucketCommand, GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { unbundleFiles } from '../../cli/commands/bundle-files';
import type { VolumeRecord } from '../../tasks/task';
import { cloudCertificate } from '../../toolkit/bundle/cloud-key';
import { installHelm, type Helm } from '../helpers/helm';
import { freePort } from '../helpers/free-port';
import { spawnChild, type RunningChild } from '../helpers/child-process';
import { startMongoServer, type RunningMongoServer } from '../helpers/mongo-server';
import { startNatsServer, type RunningNatsServer } from '../helpers/nats-server';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { waitUntil } from '../helpers/wait-until';
import { boto3Call } from '../helpers/ec2-clients';
import { fileSha256, upload, waitForTask, type Endpoints } from './import-driver';

jest.setTimeout(300_000);

const ROOT = join(__dirname, '../..');
const CHART = join(ROOT, 'charts/imaging');
const RECORDER = join(ROOT, 'test/helpers/env-read-recorder.js');
const READS_DIR = '/tmp/imaging-env-reads';
const ACCOUNT_ID = '123456789012';
const creds = { accessKeyId: 'AKIACHARTCONTRACT1', secretAccessKey: 'chart-contract-secret-0123456789', region: 'us-east-1' };
/** Variables that name a port the process listens on: each pod has its own, here each process gets a free one. */
const PORT_VARIABLES = ['IMAGING_PORT', 'IMAGING_HTTP_PORT', 'IMAGING_ADMIN_PORT'];

/** Files the chart mounts from a Secret: where, and the files (name to content). */
interface Mount {
  mountPath: string;
  files: Record<string, string>;
}

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string }; [key: string]: any };
type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } } };

interface Workload {
  name: string;
  /** The process kind whose settings it reads. */
  reader: SettingReader;
  command: string[];
  /** What the chart (or stack.yml) sets, resolved to values. */
  env: Record<string, string>;
  /** Secrets mounted as files. */
  mounts?: Mount[];
}

interface Started extends RunningChild {
  workload: Workload;
  env: Record<string, string>;
}

let helm: Helm;
let mongo: RunningMongoServer;
let s3: RunningS3Server;
let work: string;
/** A private CA and a certificate for 127.0.0.1: the gateway's TLS pair and the S3 TLS proxy's. */
let pki: TestPki;
/** s3rver behind TLS with the test CA's certificate. */
let s3Tls: RunningTlsProxy;
/** The cloud's key pair (bundles are encrypted for its certificate) and the bundler's signing pair. */
let cloud: KeyPair;
let bundler: KeyPair;
/** Secrets the operator created before installing (kubectl create secret), which values name. */
let OPERATOR_SECRETS: Record<string, Record<string, string>>;

/** The runtime image's own ENV (Dockerfile), under which the chart's environment is set. */
function imageEnv(): Record<string, string> {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const runtime = dockerfile.slice(dockerfile.indexOf('AS runtime'));
  const env: Record<string, string> = {};
  for (const m of runtime.matchAll(/^ENV ((?:[^\n]*\\\n)*[^\n]*)$/gm)) {
    for (const pair of m[1].replace(/\\\n/g, ' ').trim().split(/\s+/)) {
      const at = pair.indexOf('=');
      env[pair.slice(0, at)] = pair.slice(at + 1);
    }
  }
  return env;
}

function render(sets: string[], files: Record<string, string> = {}): K8sObject[] {
  const setFiles = Object.entries(files).flatMap(([key, path]) => ['--set-file', `${key}=${path}`]);
  const result = helm.run(['template', 'imaging', CHART, ...sets.flatMap((s) => ['--set', s]), ...setFiles]);
  if (result.status !== 0) throw new Error(`helm template failed:\n${result.stderr}`);
  return (jsYaml.loadAll(result.stdout) as K8sObject[]).filter((o) => o != null);
}

/**
 * The workloads of a rendered chart with their environment and Secret volumes resolved as the
 * kubelet resolves them, from the rendered objects and the Secrets the operator made.
 */
function workloadsOf(objects: K8sObject[], operatorSecrets: Record<string, Record<string, string>> = {}): Workload[] {
  const configMaps = new Map(objects.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata.name, (o.data ?? {}) as Record<string, string>]));
  const secrets = new Map([
    ...Object.entries(operatorSecrets),
    ...objects.filter((o) => o.kind === 'Secret').map((o) => [o.metadata.name, (o.stringData ?? {}) as Record<string, string>] as const),
  ]);
  const lookup = (kind: string, store: Map<string, Record<string, string>>, name: string, key: string) => {
    const value = store.get(name)?.[key];
    if (value === undefined) throw new Error(`the chart refers to ${kind} ${name} key ${key}, which it does not render`);
    return value;
  };
  const workloads = objects.filter((o) => o.kind === 'Deployment' || (o.kind === 'Service' && o.apiVersion.startsWith('serving.knative.dev/')));
  return workloads.map((w) => {
    const container = w.spec.template.spec.containers[0];
    const env: Record<string, string> = {};
    for (const from of container.envFrom ?? []) {
      const data = configMaps.get(from.configMapRef.name);
      if (!data) throw new Error(`${w.metadata.name}: envFrom names ConfigMap ${from.configMapRef.name}, which the chart does not render`);
      Object.assign(env, data);
    }
    for (const e of (container.env ?? []) as EnvVar[]) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.valueFrom?.secretKeyRef) env[e.name] = lookup('Secret', secrets, e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key);
      else if (e.valueFrom?.configMapKeyRef) env[e.name] = lookup('ConfigMap', configMaps, e.valueFrom.configMapKeyRef.name, e.valueFrom.configMapKeyRef.key);
      else throw new Error(`${w.metadata.name}: env ${e.name} has no value this test can resolve`);
    }
    const volumes = new Map(((w.spec.template.spec.volumes ?? []) as any[]).map((v) => [v.name, v]));
    const mounts: Mount[] = [];
    for (const m of (container.volumeMounts ?? []) as { name: string; mountPath: string }[]) {
      const volume = volumes.get(m.name);
      if (!volume) throw new Error(`${w.metadata.name}: volumeMount ${m.name} has no volume`);
      if (volume.emptyDir) continue; // /tmp: each process has the machine's
      if (!volume.secret) throw new Error(`${w.metadata.name}: volume ${m.name} is neither an emptyDir nor a Secret`);
      const items = (volume.secret.items ?? []) as { key: string; path: string }[];
      if (items.length === 0) throw new Error(`${w.metadata.name}: Secret volume ${m.name} names no items`);
      const files = Object.fromEntries(items.map((i) => [i.path, lookup('Secret', secrets, volume.secret.secretName, i.key)]));
      mounts.push({ mountPath: m.mountPath, files });
    }
    return { name: w.metadata.name, reader: container.command.includes('gateway') ? 'gateway' : 'stage', command: container.command, env, mounts };
  });
}

/** Substitutes only the service host names (and ports) of the chart's defaults with the local servers'. */
function localServices(nats: RunningNatsServer, hosts: { nats: string; mongodbUri: string; s3: string }, s3Endpoint = s3.endpoint): (value: string) => string {
  const natsHost = new URL(nats.url).host;
  const s3Host = new URL(s3Endpoint).host;
  return (value) => value.split(hosts.mongodbUri).join(mongo.uri).split(hosts.nats).join(natsHost).split(hosts.s3).join(s3Host);
}

async function startWorkload(workload: Workload, substitute: (value: string) => string, started: Started[]): Promise<Started> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', ...imageEnv() };
  for (const [name, value] of Object.entries(workload.env)) env[name] = substitute(value);
  for (const name of PORT_VARIABLES) if (env[name] !== undefined) env[name] = String(await freePort());
  // Each pod's Secret volumes: the files written into a directory of this process's own, and the
  // settings that name a file under a mount path pointed at it.
  const root = tempDir(`chart-files-${workload.name}-`);
  for (const [i, mount] of (workload.mounts ?? []).entries()) {
    const dir = join(root, String(i));
    mkdirSync(dir, { recursive: true });
    for (const [file, content] of Object.entries(mount.files)) writeFileSync(join(dir, file), content, { mode: 0o400 });
    for (const [name, value] of Object.entries(env)) if (value.startsWith(`${mount.mountPath}/`)) env[name] = join(dir, value.slice(mount.mountPath.length + 1));
    // A mounted file no setting names is read by nobody.
    expect([workload.name, mount.mountPath, Object.values(env).some((v) => v.startsWith(`${dir}/`))]).toEqual([workload.name, mount.mountPath, true]);
  }
  expect(workload.command[0]).toBe('node');
  // All of its output is kept: the log contract reads every line.
  const entry = { ...spawnChild(process.execPath, ['-r', RECORDER, ...workload.command.slice(1)], { cwd: ROOT, env, keepBytes: 256 * 2 ** 20 }), workload, env };
  started.push(entry);
  return entry;
}

async function waitReady(entry: Started): Promise<void> {
  const url = `http://127.0.0.1:${entry.env.IMAGING_ADMIN_PORT}/readyz`;
  let status = 0;
  await waitUntil(async () => (status = await fetch(url, { signal: AbortSignal.timeout(5000) }).then((r) => r.status, () => 0)) === 200, {
    what: `${entry.workload.name} ready`, timeoutMs: 60_000, everyMs: 250, gaveUp: entry.ended,
  }).catch((error: Error) => {
    throw new Error(`${error.message} (last /readyz ${status}):\n${entry.output()}`);
  });
}

/** Stops every process (SIGTERM, as Kubernetes does) and returns what each read from its environment. */
async function stopAll(started: Started[]): Promise<Map<Started, Set<string>>> {
  await Promise.all(started.map((entry) => entry.stop('SIGTERM', 60_000)));
  const reads = new Map<Started, Set<string>>();
  for (const entry of started) {
    const file = join(READS_DIR, `${entry.child.pid}.json`);
    if (!existsSync(file)) throw new Error(`${entry.workload.name} left no record of what it read (exit ${entry.child.exitCode}, signal ${entry.child.signalCode}):\n${entry.output()}`);
    reads.set(entry, new Set(JSON.parse(readFileSync(file, 'utf8')) as string[]));
    rmSync(file, { force: true });
  }
  return reads;
}

/** Every variable a workload is given is read by its process, and every setting its process requires is given. */
function expectEnvironmentContract(reads: Map<Started, Set<string>>): void {
  for (const [entry, read] of reads) {
    const unread = Object.keys(entry.workload.env).filter((name) => !read.has(name));
    expect([entry.workload.name, 'sets but never reads', unread]).toEqual([entry.workload.name, 'sets but never reads', []]);
    const required = (SETTINGS as readonly SettingSpec[])
      .filter((s) => s.requiredBy?.includes(entry.workload.reader) || (entry.workload.reader === 'stage' && s.key === 'stage'))
      .map((s) => s.env);
    if (entry.workload.reader === 'stage' && entry.workload.env.IMAGING_HOST_MODE !== 'http') required.push('IMAGING_NATS_URL');
    const missing = required.filter((name) => entry.workload.env[name] === undefined);
    expect([entry.workload.name, 'requires but is not given', missing]).toEqual([entry.workload.name, 'requires but is not given', []]);
  }
}

/**
 * The log contract, read from every process's output (pino JSON at the chart's log level): every
 * line about a task names its account too, a stage's lines name the stage and the CloudEvent, and
 * the task's state changes are logged once each, in order.
 */
function expectLogContract(started: Started[], taskId: string): void {
  const lines: { process: string; line: Record<string, unknown> }[] = [];
  for (const entry of started) {
    for (const text of entry.output().split('\n')) {
      if (!text.startsWith('{')) continue;
      lines.push({ process: entry.workload.name, line: JSON.parse(text) });
    }
  }
  const aboutTasks = lines.filter((l) => l.line.taskId !== undefined);
  expect(aboutTasks.length).toBeGreaterThan(0);
  for (const { process, line } of aboutTasks) {
    const stage = started.find((e) => e.workload.name === process)!.workload.reader === 'stage';
    const missing = ['accountId', ...(stage ? ['stage', 'eventId'] : [])].filter((field) => typeof line[field] !== 'string');
    expect([process, line.msg, missing]).toEqual([process, line.msg, []]);
  }
  const changes = aboutTasks
    .filter((l) => l.line.taskId === taskId && (l.line.msg === 'task created' || l.line.msg === 'task state changed'))
    .sort((a, b) => (a.line.time as number) - (b.line.time as number));
  expect(changes.map((l) => l.line.to)).toEqual(['pending-upload', 'manifest-received', 'bundle-decrypted', 'disk-converted', 'validated', 'boot-checked', 'completed']);
  // Each change is logged by the process that made it: the gateway creates, each stage moves the task on.
  expect(changes.map((l) => l.line.stage ?? l.process)).toEqual(['imaging-gateway', 'manifest', 'decrypt', 'convert', 'validate', 'boot-check', 'register']);
}

/** Polls `probe` until it gives a value (at most 120 s). */
async function waitFor<T>(probe: () => Promise<T | undefined>): Promise<T> {
  let value: T | undefined;
  await waitUntil(async () => (value = await probe()) !== undefined, { what: 'the value', timeoutMs: 120_000, everyMs: 250 });
  return value!;
}

/** The gateway's EC2 endpoint and the S3 endpoint as a client outside reaches them (https when TLS is on). */
function endpointsOf(gateway: Started, tls = false): Endpoints {
  return tls
    ? { ec2: `https://127.0.0.1:${gateway.env.IMAGING_PORT}/`, s3: s3Tls.endpoint, creds, caBundle: pki.ca }
    : { ec2: `http://127.0.0.1:${gateway.env.IMAGING_PORT}/`, s3: s3.endpoint, creds };
}

/**
 * One import through the gateway with boto3, to completion, with the bytes checked; resolves to
 * its task id. `whileOpen` runs while the task is still open (the per-account cap's test).
 */
async function importThrough(endpoints: Endpoints, bucket: string, whileOpen?: (manifestUrl: string, size: number) => Promise<void>): Promise<string> {
  const disk = makeRawDisk(tempDir('chart-contract-'));
  const up = await upload(endpoints, disk.path, bucket);
  const out = await boto3Call(endpoints.ec2, creds, 'ImportVolume', {
    Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl },
    Volume: { Size: up.volumeSizeGiB },
    AvailabilityZone: 'local-1a',
  }, { caBundle: endpoints.caBundle });
  await whileOpen?.(up.manifestUrl, up.size);
  const done = await waitForTask(endpoints, out.ConversionTask.ConversionTaskId, 120_000);
  expect([done.State, done.StatusMessage]).toEqual(['completed', '']);
  expect(done.ImportVolume.Image.Checksum).toBe(fileSha256(disk.path));
  return out.ConversionTask.ConversionTaskId;
}

/** Values an operator gives at install: the account and S3 key pair (inline, for a trial) and a database per run. */
const installValues = (database: string) => [
  `stages.gateway.account.accountId=${ACCOUNT_ID}`,
  `stages.gateway.account.accessKeyId=${creds.accessKeyId}`,
  `stages.gateway.account.secretAccessKey=${creds.secretAccessKey}`,
  `config.s3.accessKeyId=${s3.accessKeyId}`,
  `config.s3.secretAccessKey=${s3.secretAccessKey}`,
  `config.mongodb.database=${database}`,
];

/** The chart's own defaults for the service hosts (values.yaml), which the test points at its servers. */
function chartServiceHosts(): { nats: string; mongodbUri: string; s3: string } {
  const values = jsYaml.load(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as any;
  return { nats: new URL(values.config.natsUrl).host, mongodbUri: values.config.mongodb.uri, s3: new URL(values.config.s3.endpoint).host };
}

beforeAll(async () => {
  helm = installHelm();
  work = tempDir('chart-contract-pki-');
  pki = makeTestPki(work);
  cloud = makeKeyPair(work, 'cloud');
  bundler = makeKeyPair(work, 'bundler');
  OPERATOR_SECRETS = {
    // kubectl create secret generic operator-s3-ca --from-file=our-ca.pem (a key name of its own)
    'operator-s3-ca': { 'our-ca.pem': readFileSync(pki.ca, 'utf8') },
    'operator-cloud-key': { 'cloud.pem': cloud.keyPem },
  };
  [mongo, s3] = await Promise.all([startMongoServer(), startS3Server()]);
  s3Tls = await startTlsProxy(pki, Number(new URL(s3.endpoint).port));
  // The user signs S3 requests with the same key pair as EC2 requests; s3rver must know it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- s3rver has no type declarations
  require('s3rver/lib/models/account').DUMMY_ACCOUNT.createKeyPair(creds.accessKeyId, creds.secretAccessKey);
});

afterAll(async () => {
  helm?.remove();
  await s3Tls?.stop();
  await Promise.all([mongo?.stop(), s3?.stop()]);
});

describe('the chart, run as rendered', () => {
  let nats: RunningNatsServer;
  const started: Started[] = [];
  const buses: JetStreamBus[] = [];

  beforeEach(async () => {
    nats = await startNatsServer();
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close()));
    await Promise.all(started.splice(0).map((entry) => entry.stop('SIGKILL')));
    await nats.stop();
  });

  test('deployment mode, TLS, CA bundle, cloud key and per-account limits on: every workload starts with its rendered environment and files, and imports complete', async () => {
    const objects = render(
      [
        ...installValues('chart_contract_deployment'),
        'mode=deployment',
        // Object storage over https, with a certificate of the operator's private CA.
        'config.s3.endpoint=https://minio:9000',
        'config.s3.caBundle.existingSecret=operator-s3-ca',
        'config.s3.caBundle.key=our-ca.pem',
        'config.cloudKey.existingSecret=operator-cloud-key',
        'config.cloudKey.key=cloud.pem',
        'config.limits.maxOpenTasksPerAccount=1',
        'config.limits.accountStorageQuotaGib=1',
      ],
      // The gateway's certificate and key inline: the chart keeps them in a Secret of its own.
      { 'stages.gateway.tls.cert': pki.cert, 'stages.gateway.tls.key': pki.key },
    );
    const workloads = workloadsOf(objects, OPERATOR_SECRETS);
    // The pipeline table decides the stages; the chart renders one workload each, and the gateway.
    expect(workloads.map((w) => w.name).sort()).toEqual(['gateway', ...STAGE_NAMES].map((s) => `imaging-${s}`).sort());
    // Each file and limit goes to the workloads that read it, and to no other.
    const givenTo = (name: string) => workloads.filter((w) => w.env[name] !== undefined).map((w) => w.name).sort();
    expect(givenTo('IMAGING_S3_CA_BUNDLE')).toEqual(workloads.map((w) => w.name).sort());
    expect(givenTo('IMAGING_TLS_CERT')).toEqual(['imaging-gateway']);
    expect(givenTo('IMAGING_TLS_KEY')).toEqual(['imaging-gateway']);
    expect(givenTo('IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT')).toEqual(['imaging-gateway']);
    expect(givenTo('IMAGING_CLOUD_KEY_FILE')).toEqual(['imaging-decrypt', 'imaging-export', 'imaging-manifest']);
    expect(givenTo('IMAGING_ACCOUNT_STORAGE_QUOTA_GIB')).toEqual(['imaging-convert']);
    const substitute = localServices(nats, chartServiceHosts(), s3Tls.endpoint);
    for (const workload of workloads) await startWorkload(workload, substitute, started);
    for (const entry of started) await waitReady(entry);
    // A stage is ready once object storage answered: each reached it over TLS, trusting the operator's CA
    // (the gateway does so when it reads the bundle manifest below).
    expect(s3Tls.connections()).toBeGreaterThanOrEqual(STAGE_NAMES.length);
    const gateway = started.find((e) => e.workload.reader === 'gateway')!;
    const endpoints = endpointsOf(gateway, true);
    // The gateway serves HTTPS with the mounted certificate: a client without the test CA refuses it.
    await expect(boto3Call(endpoints.ec2, creds, 'DescribeConversionTasks')).rejects.toThrow(/SSL|CERTIFICATE_VERIFY_FAILED|certificate/i);

    // One open import task per account (IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT=1): a second while the first runs is refused.
    const taskId = await importThrough(endpoints, 'contract-deployment', async (manifestUrl, size) => {
      const refused = boto3Call(endpoints.ec2, creds, 'ImportVolume', { Image: { Format: 'RAW', Bytes: size, ImportManifestUrl: manifestUrl }, Volume: { Size: 1 }, AvailabilityZone: 'local-1a' }, { caBundle: pki.ca });
      await expect(refused).rejects.toMatchObject({ code: 'ResourceLimitExceeded', message: expect.stringContaining('the most allowed at once (1, IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT)') });
    });

    // The storage quota (1 GiB) in the convert stage: a small upload declaring a 2 GiB disk is refused before it is written.
    const bucket = 'contract-deployment-more';
    await s3.s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const big = join(work, 'big.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', big, '2G']);
    await s3.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'big.qcow2', Body: readFileSync(big) }));
    const overQuota = await boto3Call(endpoints.ec2, creds, 'ImportImage', { DiskContainers: [{ Format: 'QCOW2', UserBucket: { S3Bucket: bucket, S3Key: 'big.qcow2' } }] }, { caBundle: pki.ca });
    const refusedTask = await waitFor(async () => {
      const task = (await boto3Call(endpoints.ec2, creds, 'DescribeImportImageTasks', { ImportTaskIds: [overQuota.ImportTaskId] }, { caBundle: pki.ca })).ImportImageTasks[0];
      return ['active', 'deleting'].includes(task.Status) ? undefined : task;
    });
    expect(refusedTask.Status).toBe('deleted');
    expect(refusedTask.StatusMessage).toMatch(/^ClientError: the image's virtual disk is 2 GiB, .* over the account's storage quota of 1 GiB \(IMAGING_ACCOUNT_STORAGE_QUOTA_GIB\)/);

    // The cloud key in the decrypt stage: an EC2 bundle encrypted for its certificate registers.
    const kernel = join(work, 'vmlinuz');
    writeFileSync(kernel, seededBytes(600_000, 41));
    const bundle = makeOpensslBundle({ dir: work, imagePath: kernel, prefix: 'kernel', partSize: 256 * 1024, cloud, user: bundler, imageType: 'kernel' });
    for (const path of [bundle.manifestPath, ...bundle.partPaths]) await s3.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `bundles/${basename(path)}`, Body: readFileSync(path) }));
    const store = await openTaskStore(mongo.uri, { mongoDbName: 'chart_contract_deployment' });
    await addSigningCertificate(store, ACCOUNT_ID, bundler.certPem);
    await store.close();
    const { ImageId } = await boto3Call(endpoints.ec2, creds, 'RegisterImage', { ImageLocation: `${bucket}/bundles/kernel.manifest.xml`, Name: 'kernel' }, { caBundle: pki.ca });
    const image = await waitFor(async () => {
      const found = (await boto3Call(endpoints.ec2, creds, 'DescribeImages', { ImageIds: [ImageId] }, { caBundle: pki.ca })).Images[0];
      return found.State === 'pending' ? undefined : found;
    });
    expect([image.State, image.StateReason?.Message ?? '']).toEqual(['available', '']);

    // The cloud key in the export stage: BundleInstance of an instance over the imported volume is
    // signed and encrypted with it (the manifest stage verifies such a bundle with its certificate).
    const ownStore = await openTaskStore(mongo.uri, { mongoDbName: 'chart_contract_deployment' });
    const volumeId = (await ownStore.get(taskId))!.artifacts.volumeId!;
    const volume = (await ownStore.getResource(volumeId)) as VolumeRecord;
    const instanceId = 'i-0c0ffee0c0ffee000';
    await ownStore.putResource({ id: instanceId, kind: 'instance', accountId: ACCOUNT_ID, taskId, state: 'stopped', volumeIds: [volumeId], architecture: 'x86_64', createdAt: new Date().toISOString() });
    await ownStore.close();
    const bundling = (await boto3Call(endpoints.ec2, creds, 'BundleInstance', { InstanceId: instanceId, Storage: { S3: { Bucket: bucket, Prefix: 'bundled/vol' } } }, { caBundle: pki.ca })).BundleTask;
    const bundled = await waitFor(async () => {
      const found = (await boto3Call(endpoints.ec2, creds, 'DescribeBundleTasks', { BundleIds: [bundling.BundleId] }, { caBundle: pki.ca })).BundleTasks[0];
      return ['complete', 'failed'].includes(found.State) ? found : undefined;
    });
    expect([bundled.State, bundled.BundleTaskError]).toEqual(['complete', undefined]);
    const local = join(work, 'bundled');
    mkdirSync(local, { recursive: true });
    for (const o of (await s3.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'bundled/' }))).Contents ?? []) {
      const body = await s3.s3.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }));
      writeFileSync(join(local, basename(o.Key!)), Buffer.from(await body.Body!.transformToByteArray()));
    }
    const cloudCertPath = join(work, 'cloud-cert-of-key.pem');
    writeFileSync(cloudCertPath, cloudCertificate(cloud.keyPem));
    const unbundled = await unbundleFiles(join(local, 'vol.manifest.xml'), { privateKey: cloud.keyPath, cert: cloudCertPath, destination: join(local, 'out'), progress: false });
    expect([unbundled.signature, unbundled.size, fileSha256(unbundled.path)]).toEqual(['verified', volume.image.size, volume.image.sha256]);

    expectEnvironmentContract(await stopAll(started));
    expectLogContract(started, taskId);
  });

  test('knative mode: stages serve CloudEvents over HTTP, delivered by their Triggers, and an import completes', async () => {
    // The operator's CA bundle and cloud key mounted the same way as in deployment mode (S3 stays plain here).
    const files = ['config.s3.caBundle.existingSecret=operator-s3-ca', 'config.s3.caBundle.key=our-ca.pem', 'config.cloudKey.existingSecret=operator-cloud-key', 'config.cloudKey.key=cloud.pem'];
    const objects = render([...installValues('chart_contract_knative'), 'mode=knative', ...files]);
    const workloads = workloadsOf(objects, OPERATOR_SECRETS);
    expect(workloads.map((w) => w.name).sort()).toEqual(['gateway', ...STAGE_NAMES].map((s) => `imaging-${s}`).sort());
    const substitute = localServices(nats, chartServiceHosts());
    for (const workload of workloads) await startWorkload(workload, substitute, started);
    for (const entry of started) await waitReady(entry);

    // The Broker: each Trigger's events, from the pipeline's stream, to its subscriber's HTTP port.
    const triggers = objects.filter((o) => o.kind === 'Trigger');
    expect(triggers).toHaveLength(STAGE_NAMES.length);
    for (const trigger of triggers) {
      const subscriber = started.find((e) => e.workload.name === trigger.spec.subscriber.ref.name);
      if (!subscriber) throw new Error(`Trigger ${trigger.metadata.name} names ${trigger.spec.subscriber.ref.name}, which is not a workload`);
      const url = `http://127.0.0.1:${subscriber.env.IMAGING_HTTP_PORT}/`;
      const bus = await JetStreamBus.connect({ servers: nats.url, name: `broker-${trigger.metadata.name}` });
      buses.push(bus);
      await bus.subscribe({ durable: `broker-${trigger.metadata.name}`, types: [trigger.spec.filter.attributes.type], maxDeliver: 5, ackWaitMs: 60_000 }, async (event) => {
        const message = HTTP.binary(event);
        const response = await fetch(url, { method: 'POST', headers: message.headers as Record<string, string>, body: message.body as string });
        if (!response.ok) throw new Error(`${trigger.metadata.name}: ${response.status} ${await response.text()}`);
      });
    }
    await importThrough(endpointsOf(started.find((e) => e.workload.reader === 'gateway')!), 'contract-knative');
    expectEnvironmentContract(await stopAll(started));
  });

  test('stack.yml: every OpenFaaS function starts with its environment (as faas-cli substitutes it) and an import completes', async () => {
    const stack = jsYaml.load(readFileSync(join(ROOT, 'stack.yml'), 'utf8')) as any;
    // What the deployer exports before `faas-cli deploy` (stack.yml's header); the rest keeps its defaults.
    const deployer: Record<string, string> = {
      IMAGING_MONGODB_URI: mongo.uri,
      IMAGING_MONGODB_DB: 'chart_contract_stack',
      IMAGING_S3_ACCESS_KEY_ID: s3.accessKeyId,
      IMAGING_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      // OpenFaaS secrets, as the header says: files the functions find at these paths.
      IMAGING_S3_CA_BUNDLE: pki.ca,
      IMAGING_CLOUD_KEY_FILE: cloud.keyPath,
    };
    const faasSubstitute = (value: string) => value.replace(/\$\{([A-Z0-9_]+):-([^}]*)\}/g, (_, name: string, fallback: string) => deployer[name] ?? fallback);
    const functions = Object.entries(stack.functions) as [string, { environment: Record<string, string> }][];
    expect(functions.map(([name]) => name).sort()).toEqual(STAGE_NAMES.map((s) => `imaging-${s}`).sort());
    const defaults = { nats: 'nats.openfaas:4222', mongodbUri: 'mongodb://mongodb.openfaas:27017', s3: 'minio.openfaas:9000' };
    const substitute = localServices(nats, defaults);
    for (const [name, fn] of functions) {
      const env = Object.fromEntries(Object.entries(fn.environment).map(([k, v]) => [k, faasSubstitute(String(v))]));
      await startWorkload({ name, reader: 'stage', command: ['node', 'dist/functions/host/main.js'], env }, substitute, started);
    }
    // OpenFaaS runs the stages; the EC2 endpoint is the chart's gateway (stack.yml has none), on the same services.
    const gateway = workloadsOf(render([...installValues('chart_contract_stack'), 'mode=deployment'])).find((w) => w.reader === 'gateway')!;
    await startWorkload(gateway, localServices(nats, chartServiceHosts()), started);
    for (const entry of started) await waitReady(entry);
    await importThrough(endpointsOf(started.find((e) => e.workload.reader === 'gateway')!), 'contract-stack');
    expectEnvironmentContract(await stopAll(started));
  });
});
