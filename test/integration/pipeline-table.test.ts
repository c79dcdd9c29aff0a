/**
 * The pipeline table (pipeline/table.ts) is the one statement of the stages; everything that
 * wires them must agree with it: the state machine, the bus consumers the stage host and
 * `imaging serve` start, the Helm chart rendered by a real helm in both modes, and stack.yml.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { load, loadAll } from 'js-yaml';
import { PIPELINE, STAGE_NAMES } from '../../pipeline/table';
import { EVENT_TYPES } from '../../events/types';
import { parseEventData } from '../../events/schema';
import { makeEvent } from '../../events/make-event';
import { canTransition, nextStates } from '../../tasks/state-machine';
import type { TaskState } from '../../tasks/task';
import type { EventBus, SubscribeOptions } from '../../events/bus';
import { ALL_STAGES, stageByName } from '../../functions/stages';
import { runStageOnBus } from '../../functions/host/stage-runner';
import type { StageDeps } from '../../functions/host/deps';
import { installHelm, type Helm } from '../helpers/helm';

const ROOT = join(__dirname, '../..');
const CHART = join(ROOT, 'charts/imaging');
const ACCOUNT = ['stages.gateway.account.accountId=123456789012', 'stages.gateway.account.existingSecret=imaging-account'];

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string }; [key: string]: any };
type EnvVar = { name: string; value?: string };

const stageNames = PIPELINE.map((row) => row.stage);
const workloadName = (stage: string) => `imaging-${stage}`;
const envOf = (workload: K8sObject) => new Map((workload.spec.template.spec.containers[0].env as EnvVar[]).map((e) => [e.name, e.value]));
const sorted = (values: Iterable<string>) => [...values].sort();

describe('the pipeline table', () => {
  test('names each stage once, and each consumed event once (a Trigger filters on exactly one type)', () => {
    expect(new Set(stageNames).size).toBe(PIPELINE.length);
    expect(new Set(PIPELINE.map((row) => row.consumes)).size).toBe(PIPELINE.length);
    expect(STAGE_NAMES).toEqual(stageNames);
  });

  test('every event type is one of EVENT_TYPES and has a payload parser', () => {
    const known = new Set<string>(Object.values(EVENT_TYPES));
    const ids = { taskId: 'import-vol-00000001', accountId: '111122223333' };
    // Enough for every payload; a parser keeps only the fields of its own.
    const data = { ...ids, image: { bucket: 'b', key: 'k', size: 1, sha256: 'a'.repeat(64) }, resourceId: 'vol-0a1b2c3d' };
    for (const row of PIPELINE) {
      expect(known).toContain(row.consumes);
      expect(known).toContain(row.emits);
      for (const type of [row.consumes, row.emits]) expect(parseEventData(makeEvent(type, data as never, 'test'), type)).toMatchObject(ids);
      expect(() => parseEventData(makeEvent(row.consumes, { taskId: ids.taskId } as never, 'test'))).toThrow(/accountId must be a non-empty string|data.image/);
    }
    expect(sorted(known)).toEqual(sorted(new Set(PIPELINE.flatMap((row) => [row.consumes, row.emits]))));
  });
});

describe('the state machine follows the table', () => {
  const pipelineStates = [...new Set(PIPELINE.flatMap((row) => [row.expects, row.movesTo]))] as TaskState[];

  test('each stage moves a task from the state it expects to the one it leaves, and no other pipeline step exists', () => {
    for (const from of pipelineStates) {
      const expected = PIPELINE.filter((row) => row.expects === from).map((row) => row.movesTo);
      expect(sorted(nextStates(from))).toEqual(sorted(expected));
      for (const to of pipelineStates) {
        expect(canTransition(from, to)).toBe((expected as string[]).includes(to));
      }
    }
  });
});

describe('the bus consumers follow the table', () => {
  test('runStageOnBus subscribes each stage as its row says: durable, event type and defaults', async () => {
    const subscribed: SubscribeOptions[] = [];
    const recordingBus: EventBus = {
      publish: async () => undefined,
      subscribe: async (options: SubscribeOptions) => {
        subscribed.push(options);
        return { stop: async () => undefined };
      },
      close: async () => undefined,
    } as unknown as EventBus;
    const deps = {} as StageDeps;
    expect(ALL_STAGES.map((stage) => stage.name)).toEqual(stageNames);
    for (const stage of ALL_STAGES) await runStageOnBus(stage, deps, recordingBus);
    expect(subscribed.map(({ onGiveUp, ...options }) => options)).toEqual(
      PIPELINE.map((row) => ({
        durable: row.stage,
        types: [row.consumes],
        concurrency: row.concurrency,
        maxDeliver: row.maxDeliver,
        ackWaitMs: row.ackWaitMs,
      })),
    );
    for (const row of PIPELINE) expect(stageByName(row.stage).consumes).toBe(row.consumes);
  });
});

describe('the Helm chart follows the table', () => {
  let helm: Helm;
  beforeAll(() => {
    helm = installHelm();
  });
  afterAll(() => helm.remove());

  const render = (...sets: string[]): K8sObject[] => {
    const result = helm.run(['template', 'imaging', CHART, ...[...ACCOUNT, ...sets].flatMap((s) => ['--set', s])]);
    if (result.status !== 0) throw new Error(`helm template failed:\n${result.stderr}`);
    return (loadAll(result.stdout) as (K8sObject | null)[]).filter((o): o is K8sObject => o != null);
  };
  /** The stage workloads rendered: every workload but the gateway. */
  const stageWorkloads = (objects: K8sObject[], kind: string, apiVersionPrefix: string) =>
    objects.filter((o) => o.kind === kind && o.apiVersion.startsWith(apiVersionPrefix) && o.metadata.name !== 'imaging-gateway');

  test('values.yaml has an entry per stage, naming the event type its row consumes', () => {
    const values = load(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as any;
    expect(sorted(Object.keys(values.stages).filter((name) => name !== 'gateway'))).toEqual(sorted(stageNames));
    for (const row of PIPELINE) expect(values.stages[row.stage].consumes).toBe(row.consumes);
  });

  test('deployment mode with KEDA: a Deployment and a ScaledObject on its durable per row, nothing else', () => {
    const objects = render('mode=deployment', 'keda.enabled=true');
    const deployments = stageWorkloads(objects, 'Deployment', 'apps/');
    expect(sorted(deployments.map((d) => d.metadata.name))).toEqual(sorted(stageNames.map(workloadName)));
    const scaled = stageWorkloads(objects, 'ScaledObject', 'keda.sh/');
    expect(sorted(scaled.map((s) => s.metadata.name))).toEqual(sorted(stageNames.map(workloadName)));
    for (const row of PIPELINE) {
      const deployment = deployments.find((d) => d.metadata.name === workloadName(row.stage))!;
      expect(envOf(deployment).get('IMAGING_STAGE')).toBe(row.stage);
      expect(envOf(deployment).get('IMAGING_HOST_MODE')).toBe('jetstream');
      const scaledObject = scaled.find((s) => s.metadata.name === workloadName(row.stage))!;
      // The stage host's consumer is the row's durable, which is what KEDA must watch.
      expect(scaledObject.spec.triggers[0].metadata.consumer).toBe(row.stage);
      expect(scaledObject.spec.scaleTargetRef.name).toBe(workloadName(row.stage));
    }
  });

  test('knative mode: a Knative Service and a Trigger on the consumed event type per row, nothing else', () => {
    const objects = render('mode=knative');
    const services = stageWorkloads(objects, 'Service', 'serving.knative.dev/');
    expect(sorted(services.map((s) => s.metadata.name))).toEqual(sorted(stageNames.map(workloadName)));
    const triggers = stageWorkloads(objects, 'Trigger', 'eventing.knative.dev/');
    expect(sorted(triggers.map((t) => t.metadata.name))).toEqual(sorted(stageNames.map(workloadName)));
    for (const row of PIPELINE) {
      const service = services.find((s) => s.metadata.name === workloadName(row.stage))!;
      expect(envOf(service).get('IMAGING_STAGE')).toBe(row.stage);
      expect(envOf(service).get('IMAGING_HOST_MODE')).toBe('http');
      const trigger = triggers.find((t) => t.metadata.name === workloadName(row.stage))!;
      expect(trigger.spec.filter.attributes).toEqual({ type: row.consumes });
      expect(trigger.spec.subscriber.ref.name).toBe(workloadName(row.stage));
    }
  });
});

describe('stack.yml follows the table', () => {
  test('one OpenFaaS function per row, running that stage, nothing else', () => {
    const stack = load(readFileSync(join(ROOT, 'stack.yml'), 'utf8')) as any;
    const functions = Object.entries(stack.functions) as [string, { environment: Record<string, string> }][];
    expect(sorted(functions.map(([name]) => name))).toEqual(sorted(stageNames.map(workloadName)));
    for (const [name, f] of functions) {
      expect(name).toBe(workloadName(f.environment.IMAGING_STAGE));
      // The function host reads the stage's event and consumer from its row, so the stage name is the whole wiring.
      expect(stageByName(f.environment.IMAGING_STAGE).name).toBe(f.environment.IMAGING_STAGE);
    }
  });
});
