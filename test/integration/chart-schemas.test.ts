/**
 * Every object the chart renders, in every mode and option that changes what is rendered, is
 * valid against its Kubernetes schema (core, KEDA, Knative, Prometheus Operator), checked offline
 * by test/helpers/validate-k8s-objects.mjs. A wrong field type or a misspelled field a schema
 * forbids fails here instead of at `kubectl apply`.
 */
import { execFileSync, spawnSync } from 'child_process';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import * as jsYaml from 'js-yaml';
import { installHelm, type Helm } from '../helpers/helm';

const ROOT = join(__dirname, '../..');
const CHART = join(ROOT, 'charts/imaging');
const VALIDATOR = join(ROOT, 'test/helpers/validate-k8s-objects.mjs');
const ACCOUNT = ['stages.gateway.account.accountId=123456789012', 'stages.gateway.account.existingSecret=imaging-account'];

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string } };

let helm: Helm;
beforeAll(() => {
  helm = installHelm();
  pemDir = mkdtempSync(join(tmpdir(), 'chart-schemas-'));
  pem = { cert: join(pemDir, 'cert.pem'), key: join(pemDir, 'key.pem') };
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', pem.key, '-out', pem.cert, '-days', '2', '-subj', '/CN=imaging-gateway'], { stdio: 'pipe' });
});
afterAll(() => {
  helm?.remove();
  rmSync(pemDir, { recursive: true, force: true });
});

/** A PEM certificate and key in files, for the values given as files (--set-file KEY=@cert / @key). */
let pem: { cert: string; key: string };
let pemDir: string;

function render(sets: string[]): K8sObject[] {
  const args = [...ACCOUNT, ...sets].flatMap((s) => (/=@(cert|key)$/.test(s) ? ['--set-file', s.replace(/@(cert|key)$/, (_, which: 'cert' | 'key') => pem[which])] : ['--set', s]));
  const result = helm.run(['template', 'imaging', CHART, ...args]);
  if (result.status !== 0) throw new Error(result.stderr);
  return (jsYaml.loadAll(result.stdout) as K8sObject[]).filter((o) => o != null);
}

function validate(objects: unknown[]): { object: string; error: string | null }[] {
  const run = spawnSync(process.execPath, [VALIDATOR], { input: JSON.stringify(objects), encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (run.status !== 0) throw new Error(`validator failed: ${run.stderr}`);
  return run.stdout.trim().split('\n').map((line) => JSON.parse(line));
}

const CASES: [string, string[]][] = [
  ['deployment mode', ['mode=deployment', 'config.s3.accessKeyId=AK', 'config.s3.secretAccessKey=SK']],
  ['deployment mode with KEDA, ServiceMonitor and PDBs', ['mode=deployment', 'keda.enabled=true', 'stages.decrypt.keda.minReplicas=2', 'metrics.serviceMonitor.enabled=true', 'config.limits.workerThreads=2']],
  ['knative mode', ['mode=knative', 'config.mongodb.existingSecret=mongo']],
  ['knative mode with its Broker', ['mode=knative', 'knative.createBroker=true', 'metrics.serviceMonitor.enabled=true', 'metrics.grafanaDashboard.enabled=true']],
  // Files from Secrets (inline PEMs: the chart's own Secrets; or the operator's), gateway TLS and the per-account limits.
  ['deployment mode with TLS, CA bundle, cloud key and limits', ['mode=deployment', 'keda.enabled=true', 'stages.gateway.tls.cert=@cert', 'stages.gateway.tls.key=@key', 'config.s3.caBundle.pem=@cert', 'config.cloudKey.pem=@key', 'config.limits.maxOpenTasksPerAccount=3', 'config.limits.accountStorageQuotaGib=0.5', 'metrics.serviceMonitor.enabled=true']],
  ['knative mode with CA bundle and cloud key Secrets', ['mode=knative', 'config.s3.caBundle.existingSecret=corp-ca', 'config.cloudKey.existingSecret=cloud', 'config.limits.accountStorageQuotaGib=2']],
];

test.each(CASES)('%s: every rendered object is valid against its schema', (_, sets) => {
  const objects = render(sets);
  const results = validate(objects);
  expect(results).toHaveLength(objects.length);
  expect(results.filter((r) => r.error !== null)).toEqual([]);
  // The kinds each mode is about are among them (so the check covered them).
  const kinds = new Set(objects.map((o) => `${o.apiVersion} ${o.kind}`));
  if (sets.includes('mode=knative')) {
    expect(kinds).toContain('serving.knative.dev/v1 Service');
    expect(kinds).toContain('eventing.knative.dev/v1 Trigger');
  } else expect(kinds).toContain('apps/v1 Deployment');
  if (sets.includes('keda.enabled=true')) expect(kinds).toContain('keda.sh/v1alpha1 ScaledObject');
  // The Secret volumes were among what was validated.
  if (sets.some((s) => s.startsWith('config.cloudKey.'))) {
    const decrypt = objects.find((o) => o.metadata.name === 'imaging-decrypt' && (o.kind === 'Deployment' || o.kind === 'Service')) as any;
    expect(decrypt.spec.template.spec.volumes.map((v: { name: string }) => v.name)).toEqual(['tmp', 's3-ca', 'cloud-key']);
  }
});

test('the validator finds what is wrong, and refuses kinds it has no schema for', () => {
  const deployment = render(['mode=deployment']).find((o) => o.kind === 'Deployment') as any;
  const broken = JSON.parse(JSON.stringify(deployment));
  broken.spec.template.spec.containers[0].ports[0].containerPort = 'http';
  const knative = render(['mode=knative']).find((o) => o.kind === 'Service') as any;
  const brokenKnative = JSON.parse(JSON.stringify(knative));
  brokenKnative.spec.template.spec.containerConcurrency = 'one';
  const results = validate([broken, brokenKnative, { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }]);
  expect(results[0].error).toMatch(/containerPort must be integer/);
  expect(results[1].error).toMatch(/containerConcurrency/);
  expect(results[2].error).toBe('no schema for example.com/v1 Widget');
});
