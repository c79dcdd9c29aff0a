/**
 * ImportVolume while the task store fails (issue #10 item 8), with jongodb behind a real TCP proxy
 * that fails as a network does, the gateway on a MongoDB task store through it, and
 * @aws-sdk/client-ec2 (no retries of its own). Every call ends either with a retryable EC2 error
 * (InternalError / Unavailable) and no task, or with the task: never with a task its caller was
 * told does not exist.
 */
import { ImportVolumeCommand } from '@aws-sdk/client-ec2';
import type { CloudEvent } from 'cloudevents';
import { createGateway, StaticAccountDirectory } from '../../gateway';
import { openTaskStore } from '../../tasks/open-store';
import { RETIRED_MESSAGE } from '../../gateway/actions/start-task';
import type { TaskStore } from '../../tasks/store';
import { sdkClient } from '../helpers/ec2-clients';
import { startMongoServer, type RunningMongoServer } from '../helpers/mongo-server';
import { startMongoFaultProxy, type MongoFaultProxy } from '../helpers/mongo-fault-proxy';

jest.setTimeout(120_000);

const ACCOUNT = { accountId: '444455556666', accessKeyId: 'AKIASTOREOUTAGE01', secretAccessKey: 'store-outage-secret-key-0123456789' };
const dbName = `imaging_outage_${process.pid}`;

let mongo: RunningMongoServer;
let proxy: MongoFaultProxy;
let throughProxy: TaskStore;
let direct: TaskStore;
let gateway: { url: string; close(): Promise<void> };
const published: CloudEvent<unknown>[] = [];

beforeAll(async () => {
  mongo = await startMongoServer();
  proxy = await startMongoFaultProxy(mongo.uri);
  throughProxy = await openTaskStore(proxy.uri, { mongoDbName: dbName });
  direct = await openTaskStore(mongo.uri, { mongoDbName: dbName });
  gateway = await createGateway({
    tasks: throughProxy,
    publish: async (event) => void published.push(event),
    accounts: new StaticAccountDirectory([ACCOUNT]),
    region: 'us-east-1',
    allowedObjectHosts: ['objects.test'],
    log: { info: () => undefined, warn: () => undefined, error: () => undefined },
  }).listen(0);
});

afterAll(async () => {
  await gateway?.close();
  await throughProxy?.close();
  await direct?.close();
  await proxy?.stop();
  await mongo?.stop();
});

const ec2 = () => sdkClient(gateway.url, { ...ACCOUNT, region: 'us-east-1' });
const importVolume = (name: string) =>
  ec2().send(new ImportVolumeCommand({ Image: { Format: 'RAW', Bytes: 2 ** 20, ImportManifestUrl: `http://objects.test/b/${name}.xml` }, Volume: { Size: 1 }, AvailabilityZone: 'z' }));
const tasksOfAccount = () => direct.list({ accountId: ACCOUNT.accountId });
const live = async () => (await tasksOfAccount()).filter((t) => t.state !== 'cancelled');

test('with the task store unreachable, ImportVolume answers a retryable error within seconds and leaves no task', async () => {
  proxy.down();
  const started = Date.now();
  const outcome = await importVolume('during-outage').then(() => 'created', (error: { name?: string; $metadata?: { httpStatusCode?: number } }) => error);
  expect(Date.now() - started).toBeLessThan(20_000);
  expect(outcome).toMatchObject({ name: expect.stringMatching(/^(InternalError|Unavailable)$/) });
  proxy.up();
  expect(await live()).toEqual([]);
});

test('an insert recorded whose reply is lost ends with that task (or an error and no live task), never a phantom', async () => {
  const before = (await tasksOfAccount()).length;
  proxy.loseNextReplyTo('insert', 'tasks');
  const outcome = await importVolume('reply-lost').then(
    (out) => ({ created: out.ConversionTask!.ConversionTaskId! }),
    (error: { name?: string }) => ({ error: error.name }),
  );
  expect(proxy.lostReplies()).toBe(1);
  const all = await tasksOfAccount();
  if ('created' in outcome) {
    // The call reports the task that was recorded, and only one was.
    expect(all.map((t) => t.id)).toContain(outcome.created);
    expect(all.length).toBe(before + 1);
    expect(published.map((e) => (e.data as { taskId: string }).taskId)).toContain(outcome.created);
  } else {
    expect(outcome.error).toMatch(/^(InternalError|Unavailable)$/);
    expect(await live()).toEqual([]);
  }
});

test('an insert recorded just as the store goes away: the call answers Unavailable, and the task is cancelled once the store is back', async () => {
  const before = new Set((await tasksOfAccount()).map((t) => t.id));
  proxy.loseNextReplyTo('insert', 'tasks', { thenDown: true });
  const outcome = await importVolume('store-gone').then(() => 'created', (error: { name?: string }) => error.name);
  expect(outcome).toBe('Unavailable');
  proxy.up();
  // The insert did land: the gateway finds it once the store answers, and retires it.
  const deadline = Date.now() + 20_000;
  let recorded;
  do {
    await new Promise((r) => setTimeout(r, 250));
    recorded = (await tasksOfAccount()).filter((t) => !before.has(t.id));
  } while ((recorded.length === 0 || recorded[0].state !== 'cancelled') && Date.now() < deadline);
  expect(recorded.map((t) => [t.state, t.statusMessage])).toEqual([['cancelled', RETIRED_MESSAGE]]);
});
