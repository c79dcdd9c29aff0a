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
 * In knative mode the test stands in for the Knative Broker: for each rendered Trigger it
 * delivers the events of the Trigger's type from the pipeline's JetStream stream to the stage's
 * HTTP port, as a JetStream-channel Broker does.
 */
import { spawn, type ChildProcess } from 'child_process';
import { existsSync, readFileSync, rmSync } from 'fs';
import { join } from 'path';
import * as jsYaml from 'js-yaml';
import { HTTP } from 'cloudevents';
import { JetStreamBus } from '../../events/jetstream-bus';
import { SETTINGS, type SettingReader, type SettingSpec } from '../../config/settings-schema';
import { STAGE_NAMES } from '../../pipeline/table';
import { makeRawDisk, tempDir } from '../helpers/disk-corpus';
import { installHelm, type Helm } from '../helpers/helm';
import { freePort } from '../helpers/free-port';
import { startMongoServer, type RunningMongoServer } from '../helpers/mongo-server';
import { startNatsServer, type RunningNatsServer } from '../helpers/nats-server';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
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

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string }; [key: string]: any };
type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } } };

interface Workload {
  name: string;
  /** The process kind whose settings it reads. */
  reader: SettingReader;
  command: string[];
  /** What the chart (or stack.yml) sets, resolved to values. */
  env: Record<string, string>;
}

interface Started {
  workload: Workload;
  child: ChildProcess;
  env: Record<string, string>;
  output: () => string;
}

let helm: Helm;
let mongo: RunningMongoServer;
let s3: RunningS3Server;

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

function render(sets: string[]): K8sObject[] {
  const result = helm.run(['template', 'imaging', CHART, ...sets.flatMap((s) => ['--set', s])]);
  if (result.status !== 0) throw new Error(`helm template failed:\n${result.stderr}`);
  return (jsYaml.loadAll(result.stdout) as K8sObject[]).filter((o) => o != null);
}

/** The workloads of a rendered chart with their environment resolved as the kubelet resolves it. */
function workloadsOf(objects: K8sObject[]): Workload[] {
  const configMaps = new Map(objects.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata.name, (o.data ?? {}) as Record<string, string>]));
  const secrets = new Map(objects.filter((o) => o.kind === 'Secret').map((o) => [o.metadata.name, (o.stringData ?? {}) as Record<string, string>]));
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
    return { name: w.metadata.name, reader: container.command.includes('gateway') ? 'gateway' : 'stage', command: container.command, env };
  });
}

/** Substitutes only the service host names (and ports) of the chart's defaults with the local servers'. */
function localServices(nats: RunningNatsServer, hosts: { nats: string; mongodbUri: string; s3: string }): (value: string) => string {
  const natsHost = new URL(nats.url).host;
  const s3Host = new URL(s3.endpoint).host;
  return (value) => value.split(hosts.mongodbUri).join(mongo.uri).split(hosts.nats).join(natsHost).split(hosts.s3).join(s3Host);
}

async function startWorkload(workload: Workload, substitute: (value: string) => string, started: Started[]): Promise<Started> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', ...imageEnv() };
  for (const [name, value] of Object.entries(workload.env)) env[name] = substitute(value);
  for (const name of PORT_VARIABLES) if (env[name] !== undefined) env[name] = String(await freePort());
  expect(workload.command[0]).toBe('node');
  const child = spawn(process.execPath, ['-r', RECORDER, ...workload.command.slice(1)], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const entry = { workload, child, env, output: () => output };
  started.push(entry);
  return entry;
}

async function waitReady(entry: Started): Promise<void> {
  const url = `http://127.0.0.1:${entry.env.IMAGING_ADMIN_PORT}/readyz`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (entry.child.exitCode !== null) throw new Error(`${entry.workload.name} exited with ${entry.child.exitCode}:\n${entry.output()}`);
    const status = await fetch(url, { signal: AbortSignal.timeout(5000) }).then((r) => r.status, () => 0);
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`${entry.workload.name} never became ready (${status}):\n${entry.output()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Stops every process (SIGTERM, as Kubernetes does) and returns what each read from its environment. */
async function stopAll(started: Started[]): Promise<Map<Started, Set<string>>> {
  for (const entry of started) if (entry.child.exitCode === null) entry.child.kill('SIGTERM');
  await Promise.all(started.map((e) => (e.child.exitCode !== null ? undefined : new Promise((r) => e.child.once('exit', r)))));
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

/** One import through the gateway with boto3, to completion, with the bytes checked; resolves to its task id. */
async function importThrough(gateway: Started, bucket: string): Promise<string> {
  const endpoints: Endpoints = { ec2: `http://127.0.0.1:${gateway.env.IMAGING_PORT}/`, s3: s3.endpoint, creds };
  const disk = makeRawDisk(tempDir('chart-contract-'));
  const up = await upload(endpoints, disk.path, bucket);
  const out = await boto3Call(endpoints.ec2, creds, 'ImportVolume', {
    Image: { Format: 'RAW', Bytes: up.size, ImportManifestUrl: up.manifestUrl },
    Volume: { Size: up.volumeSizeGiB },
    AvailabilityZone: 'local-1a',
  });
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
  [mongo, s3] = await Promise.all([startMongoServer(), startS3Server()]);
  // The user signs S3 requests with the same key pair as EC2 requests; s3rver must know it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- s3rver has no type declarations
  require('s3rver/lib/models/account').DUMMY_ACCOUNT.createKeyPair(creds.accessKeyId, creds.secretAccessKey);
});

afterAll(async () => {
  helm?.remove();
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
    for (const entry of started.splice(0)) if (entry.child.exitCode === null) entry.child.kill('SIGKILL');
    await nats.stop();
  });

  test('deployment mode: every workload starts with its rendered environment and an import completes', async () => {
    const objects = render([...installValues('chart_contract_deployment'), 'mode=deployment']);
    const workloads = workloadsOf(objects);
    // The pipeline table decides the stages; the chart renders one workload each, and the gateway.
    expect(workloads.map((w) => w.name).sort()).toEqual(['gateway', ...STAGE_NAMES].map((s) => `imaging-${s}`).sort());
    const substitute = localServices(nats, chartServiceHosts());
    for (const workload of workloads) await startWorkload(workload, substitute, started);
    for (const entry of started) await waitReady(entry);
    const taskId = await importThrough(started.find((e) => e.workload.reader === 'gateway')!, 'contract-deployment');
    expectEnvironmentContract(await stopAll(started));
    expectLogContract(started, taskId);
  });

  test('knative mode: stages serve CloudEvents over HTTP, delivered by their Triggers, and an import completes', async () => {
    const objects = render([...installValues('chart_contract_knative'), 'mode=knative']);
    const workloads = workloadsOf(objects);
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
    await importThrough(started.find((e) => e.workload.reader === 'gateway')!, 'contract-knative');
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
    await importThrough(started.find((e) => e.workload.reader === 'gateway')!, 'contract-stack');
    expectEnvironmentContract(await stopAll(started));
  });
});
