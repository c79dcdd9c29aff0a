/**
 * Validates Kubernetes objects against their schemas, offline: the models of the npm packages
 * kubernetes-models, @kubernetes-models/keda, @kubernetes-models/knative and
 * @kubernetes-models/prometheus-operator (JSON schemas compiled to validators). They are ES
 * modules only, so the jest tests run this script as a child: objects (a JSON array) on stdin,
 * one line per object on stdout: {"object": "Kind/name", "error": null | "message"}.
 * An object whose apiVersion/kind has no model is an error too, never skipped.
 * IMAGING_K8S_MODELS_DIR names another node_modules to load the models from.
 */
/* global process, console */
import { existsSync, readFileSync } from 'fs';
import { dirname, join } from 'path';
import { fileURLToPath, pathToFileURL } from 'url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const modules = process.env.IMAGING_K8S_MODELS_DIR || join(root, 'node_modules');

/** Where the model of an apiVersion lives, by group. */
function modelDir(apiVersion) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  if (group === '') return join(modules, 'kubernetes-models', version);
  if (!group.includes('.') || group.endsWith('.k8s.io')) return join(modules, 'kubernetes-models', group, version);
  if (group === 'keda.sh') return join(modules, '@kubernetes-models/keda', group, version);
  if (group.endsWith('knative.dev')) return join(modules, '@kubernetes-models/knative', group, version);
  if (group === 'monitoring.coreos.com') return join(modules, '@kubernetes-models/prometheus-operator', group, version);
  return undefined;
}

for (const pkg of ['kubernetes-models', '@kubernetes-models/keda', '@kubernetes-models/knative', '@kubernetes-models/prometheus-operator']) {
  if (!existsSync(join(modules, pkg, 'package.json'))) {
    console.error(`${pkg} is not installed in ${modules}: run npm install (it is a dev dependency)`);
    process.exit(2);
  }
}

const objects = JSON.parse(readFileSync(0, 'utf8'));
for (const object of objects) {
  const label = `${object.kind}/${object.metadata?.name}`;
  const dir = object.apiVersion && object.kind ? modelDir(object.apiVersion) : undefined;
  const file = dir && join(dir, `${object.kind}.js`);
  if (!file || !existsSync(file)) {
    console.log(JSON.stringify({ object: label, error: `no schema for ${object.apiVersion} ${object.kind}` }));
    continue;
  }
  const Model = (await import(pathToFileURL(file).href))[object.kind];
  try {
    new Model(object).validate();
    console.log(JSON.stringify({ object: label, error: null }));
  } catch (error) {
    console.log(JSON.stringify({ object: label, error: error.message }));
  }
}
