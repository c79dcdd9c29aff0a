/**
 * A real gateway (SQLite task store in memory, recorded events) driven by boto3, the AWS SDK for
 * JavaScript v3 and the AWS CLI: what these clients parse is the compatibility that counts.
 */
import {
  CancelConversionTaskCommand,
  DescribeConversionTasksCommand,
  EC2Client,
  ImportImageCommand,
  BundleInstanceCommand,
  ImportInstanceCommand,
  ImportVolumeCommand,
  waitUntilConversionTaskCancelled,
} from '@aws-sdk/client-ec2';
import type { CloudEvent } from 'cloudevents';
import { XMLParser } from 'fast-xml-parser';
import { createGateway, StaticAccountDirectory } from '../../gateway';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import { updateTask } from '../../tasks/state-machine';
import { awsCli, awsCliPath, boto3Call, boto3Calls, type Boto3Outcome, boto3PresignedUrl, boto3Wait, Ec2ClientError, type Ec2Credentials, sdkClient, signedQuery } from '../helpers/ec2-clients';

const ALICE = { accountId: '111111111111', accessKeyId: 'AKIAALICE0000000001', secretAccessKey: 'alice/secret+key' };
const BOB = { accountId: '222222222222', accessKeyId: 'AKIABOB000000000002', secretAccessKey: 'bob-secret-key' };
const aliceCreds: Ec2Credentials = { accessKeyId: ALICE.accessKeyId, secretAccessKey: ALICE.secretAccessKey, region: 'us-east-1' };
const bobCreds: Ec2Credentials = { accessKeyId: BOB.accessKeyId, secretAccessKey: BOB.secretAccessKey, region: 'us-east-1' };
const OBJECT_HOST = 'objects.imaging.test:9000';
const MANIFEST_URL = `http://${OBJECT_HOST}/imports/disk.vmdk.manifest.xml?X-Amz-Signature=abc&x=1`;

let store: SqliteTaskStore;
let events: CloudEvent<unknown>[];
let server: { url: string; close(): Promise<void> };
let endpoint: string;
let sdk: EC2Client;

beforeAll(async () => {
  store = SqliteTaskStore.open(':memory:');
  events = [];
  const gateway = createGateway({
    tasks: store,
    publish: async (event) => void events.push(event),
    accounts: new StaticAccountDirectory([ALICE, BOB]),
    region: 'us-east-1',
    allowedObjectHosts: [OBJECT_HOST],
    log: { info: () => undefined, warn: () => undefined, error: () => undefined },
  });
  server = await gateway.listen(0);
  endpoint = server.url;
  sdk = sdkClient(endpoint, aliceCreds);
});

afterAll(async () => {
  sdk?.destroy();
  await server?.close();
  await store?.close();
});

/** ImportVolume input in the shape both boto3 and client-ec2 take (formats deliberately unchecked). */
const importParams = (overrides: { Format?: string; Bytes?: number; Url?: string; Size?: number } = {}): any => ({
  Image: { Format: overrides.Format ?? 'vmdk', Bytes: overrides.Bytes ?? 123456789, ImportManifestUrl: overrides.Url ?? MANIFEST_URL },
  Volume: { Size: overrides.Size ?? 2 },
  AvailabilityZone: 'us-east-1b',
  Description: 'web server <disk> & "more"',
});

/** Moves a task along as the pipeline would, so Describe has artifacts to show. */
async function pretendConverted(taskId: string) {
  await updateTask(store, taskId, (doc) => ({
    ...doc,
    state: 'disk-converted',
    statusMessage: 'Converting image',
    progress: 60,
    bytesConverted: 99999,
    artifacts: { ...doc.artifacts, image: { bucket: 'image-store', key: `${taskId}/disk.raw`, size: 2 * 1024 ** 3, sha256: 'ab'.repeat(32) }, volumeId: 'vol-0123456789abcdef0' },
  }));
}

const xml = new XMLParser();

describe('boto3', () => {
  test('ImportVolume → DescribeConversionTasks → CancelConversionTask, every field parsed', async () => {
    const before = Date.now();
    const imported = await boto3Call(endpoint, aliceCreds, 'ImportVolume', importParams());
    const task = imported.ConversionTask;
    expect(task.ConversionTaskId).toMatch(/^import-vol-[0-9a-f]{8}$/);
    expect(task.State).toBe('active');
    expect(task.StatusMessage).toBe('Pending import-image upload');
    expect(task.ImportVolume).toEqual({
      AvailabilityZone: 'us-east-1b',
      BytesConverted: 0,
      Description: 'web server <disk> & "more"',
      Image: { Format: 'VMDK', Size: 123456789, ImportManifestUrl: MANIFEST_URL },
      Volume: { Size: 2 },
    });
    const expires = Date.parse(task.ExpirationTime);
    expect(expires).toBeGreaterThanOrEqual(before + 7 * 24 * 3600 * 1000 - 1000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 7 * 24 * 3600 * 1000);
    expect(imported.ResponseMetadata.RequestId).toMatch(/^[0-9a-f-]{36}$/);

    const event = events.find((e) => (e.data as any).taskId === task.ConversionTaskId)!;
    expect(event).toBeDefined();
    expect(event.type).toBe('io.imaging.import.requested');
    expect(event.data).toEqual({ taskId: task.ConversionTaskId, accountId: ALICE.accountId });

    const stored = (await store.get(task.ConversionTaskId))!;
    expect(stored).toMatchObject({
      kind: 'import-volume',
      accountId: ALICE.accountId,
      state: 'pending-upload',
      progress: 0,
      bytesConverted: 0,
      version: 0,
      request: { format: 'VMDK', bytes: 123456789, manifestUrl: MANIFEST_URL, volumeSizeGiB: 2, availabilityZone: 'us-east-1b' },
    });
    expect(stored.history).toEqual([expect.objectContaining({ from: null, to: 'pending-upload' })]);

    const described = await boto3Call(endpoint, aliceCreds, 'DescribeConversionTasks', { ConversionTaskIds: [task.ConversionTaskId] });
    expect(described.ConversionTasks).toEqual([{ ...task, ExpirationTime: task.ExpirationTime }]);

    await boto3Call(endpoint, aliceCreds, 'CancelConversionTask', { ConversionTaskId: task.ConversionTaskId, ReasonMessage: 'wrong disk' });
    const after = await boto3Call(endpoint, aliceCreds, 'DescribeConversionTasks', { ConversionTaskIds: [task.ConversionTaskId] });
    expect(after.ConversionTasks[0].State).toBe('cancelled');
    expect(after.ConversionTasks[0].StatusMessage).toBe('wrong disk');
    expect((await store.get(task.ConversionTaskId))!.cancelRequested).toEqual({ at: expect.any(String), reason: 'wrong disk' });

    await expect(boto3Call(endpoint, aliceCreds, 'CancelConversionTask', { ConversionTaskId: task.ConversionTaskId })).rejects.toMatchObject({ code: 'IncorrectState' });
  });

  test('a converting task shows checksum, volume id and progress; cancelling it leaves it to the stage', async () => {
    const { ConversionTask } = await boto3Call(endpoint, aliceCreds, 'ImportVolume', importParams({ Format: 'RAW', Bytes: 2 * 1024 ** 3, Size: 2 }));
    const id = ConversionTask.ConversionTaskId;
    await pretendConverted(id);

    const [task] = (await boto3Call(endpoint, aliceCreds, 'DescribeConversionTasks', { ConversionTaskIds: [id] })).ConversionTasks;
    expect(task.State).toBe('active');
    expect(task.StatusMessage).toBe('Converting image');
    expect(task.ImportVolume.BytesConverted).toBe(99999);
    expect(task.ImportVolume.Image.Checksum).toBe('ab'.repeat(32));
    expect(task.ImportVolume.Volume).toEqual({ Size: 2, Id: 'vol-0123456789abcdef0' });

    await boto3Call(endpoint, aliceCreds, 'CancelConversionTask', { ConversionTaskId: id });
    const stored = (await store.get(id))!;
    expect(stored.state).toBe('disk-converted');
    expect(stored.cancelRequested).toEqual({ at: expect.any(String) });
    const [cancelling] = (await boto3Call(endpoint, aliceCreds, 'DescribeConversionTasks', { ConversionTaskIds: [id] })).ConversionTasks;
    expect(cancelling.State).toBe('cancelling');
  });

  test('a presigned URL from generate_presigned_url is accepted', async () => {
    const url = await boto3PresignedUrl(endpoint, aliceCreds, 'DescribeConversionTasks', {});
    expect(url).toContain('X-Amz-Signature=');
    // botocore signs presigned EC2 URLs for POST (its serializer's method) with no body.
    const response = await fetch(url, { method: 'POST' });
    const body = await response.text();
    expect(response.status).toBe(200);
    expect(xml.parse(body).DescribeConversionTasksResponse.conversionTasks).toBeDefined();
    const tampered = await fetch(url.replace('Action=DescribeConversionTasks', 'Action=ImportVolume'), { method: 'POST' });
    expect(xml.parse(await tampered.text()).Response.Errors.Error.Code).toBe('SignatureDoesNotMatch');
  });
});

describe('@aws-sdk/client-ec2', () => {
  test('ImportVolume → DescribeConversionTasks → CancelConversionTask, every field parsed', async () => {
    const imported = await sdk.send(new ImportVolumeCommand(importParams({ Format: 'vhd' })));
    const task = imported.ConversionTask!;
    expect(task.ConversionTaskId).toMatch(/^import-vol-[0-9a-f]{8}$/);
    expect(task.State).toBe('active');
    expect(task.StatusMessage).toBe('Pending import-image upload');
    expect(typeof task.ExpirationTime).toBe('string');
    expect(task.ImportVolume).toEqual({
      AvailabilityZone: 'us-east-1b',
      BytesConverted: 0,
      Description: 'web server <disk> & "more"',
      Image: { Format: 'VHD', Size: 123456789, ImportManifestUrl: MANIFEST_URL },
      Volume: { Size: 2 },
    });
    expect(imported.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);

    await pretendConverted(task.ConversionTaskId!);
    const described = await sdk.send(new DescribeConversionTasksCommand({ ConversionTaskIds: [task.ConversionTaskId!] }));
    expect(described.ConversionTasks).toHaveLength(1);
    const shown = described.ConversionTasks![0];
    expect(shown.ImportVolume!.Image!.Checksum).toBe('ab'.repeat(32));
    expect(shown.ImportVolume!.Volume!.Id).toBe('vol-0123456789abcdef0');
    expect(shown.ImportVolume!.BytesConverted).toBe(99999);

    // Without ids: all of Alice's tasks, this one among them, none of Bob's.
    const all = await sdk.send(new DescribeConversionTasksCommand({}));
    expect(all.ConversionTasks!.map((t) => t.ConversionTaskId)).toContain(task.ConversionTaskId);

    await sdk.send(new CancelConversionTaskCommand({ ConversionTaskId: task.ConversionTaskId! }));
    const after = await sdk.send(new DescribeConversionTasksCommand({ ConversionTaskIds: [task.ConversionTaskId!] }));
    expect(after.ConversionTasks![0].State).toBe('cancelling');
  });

  test('the extension elements are in the XML and do not disturb the SDK', async () => {
    const imported = await sdk.send(new ImportVolumeCommand(importParams()));
    const id = imported.ConversionTask!.ConversionTaskId!;
    await pretendConverted(id);
    const raw = await signedQuery(endpoint, aliceCreds, { Action: 'DescribeConversionTasks', 'ConversionTaskId.1': id });
    expect(raw.status).toBe(200);
    expect(raw.headers.get('x-amzn-requestid')).toMatch(/^[0-9a-f-]{36}$/);
    expect(raw.body).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?><DescribeConversionTasksResponse xmlns="http:\/\/ec2.amazonaws.com\/doc\/2016-11-15\/"><requestId>/);
    const volume = xml.parse(raw.body).DescribeConversionTasksResponse.conversionTasks.item.importVolume;
    expect(volume.imageLocation).toBe(`s3://image-store/${id}/disk.raw`);
    expect(volume.imageSha256).toBe('ab'.repeat(32));
    expect(volume.progress).toBe(60);
    expect(volume.description).toBe('web server <disk> & "more"');
  });
});

describe('ImportInstance', () => {
  const launch = {
    Architecture: 'x86_64',
    InstanceType: 'm5.xlarge',
    Placement: { AvailabilityZone: 'us-east-1c' },
    GroupNames: ['web', 'ssh'],
    SubnetId: 'subnet-1a2b3c4d',
    PrivateIpAddress: '10.1.2.3',
    UserData: { Data: 'ZWNobyBoaQ==' },
    Monitoring: false,
    InstanceInitiatedShutdownBehavior: 'terminate',
  };
  const diskImage = (overrides: { Format?: string; Url?: string } = {}) => ({
    Image: { Format: overrides.Format ?? 'VMDK', Bytes: 123456789, ImportManifestUrl: overrides.Url ?? MANIFEST_URL },
    Volume: { Size: 2 },
    Description: 'root <disk>',
  });

  test('boto3: ImportInstance → DescribeConversionTasks → CancelConversionTask, every field parsed', async () => {
    const imported = await boto3Call(endpoint, aliceCreds, 'ImportInstance', { Platform: 'Windows', Description: 'win & co', LaunchSpecification: launch, DiskImages: [diskImage()] });
    const task = imported.ConversionTask;
    expect(task.ConversionTaskId).toMatch(/^import-i-[0-9a-f]{8}$/);
    expect(task.State).toBe('active');
    expect(task.StatusMessage).toBe('Pending import-image upload');
    expect(task.ImportVolume).toBeUndefined();
    expect(task.ImportInstance).toEqual({
      Description: 'win & co',
      InstanceId: expect.stringMatching(/^i-[0-9a-f]{17}$/),
      Platform: 'Windows',
      Volumes: [{
        AvailabilityZone: 'us-east-1c',
        BytesConverted: 0,
        Description: 'root <disk>',
        Image: { Format: 'VMDK', Size: 123456789, ImportManifestUrl: MANIFEST_URL },
        Volume: { Size: 2 },
        Status: 'active',
        StatusMessage: 'Pending import-image upload',
      }],
    });
    expect(events.find((e) => (e.data as any).taskId === task.ConversionTaskId)?.type).toBe('io.imaging.import.requested');
    expect((await store.get(task.ConversionTaskId))!).toMatchObject({
      kind: 'import-instance',
      request: {
        format: 'VMDK', volumeSizeGiB: 2, availabilityZone: 'us-east-1c', description: 'root <disk>',
        instance: {
          instanceId: task.ImportInstance.InstanceId, platform: 'Windows', architecture: 'x86_64', instanceType: 'm5.xlarge', description: 'win & co',
          groupNames: ['web', 'ssh'], subnetId: 'subnet-1a2b3c4d', privateIpAddress: '10.1.2.3', userData: 'ZWNobyBoaQ==', monitoring: false, instanceInitiatedShutdownBehavior: 'terminate',
        },
      },
    });

    const described = await boto3Call(endpoint, aliceCreds, 'DescribeConversionTasks', { ConversionTaskIds: [task.ConversionTaskId] });
    expect(described.ConversionTasks).toEqual([task]);

    await pretendConverted(task.ConversionTaskId);
    const [converting] = (await boto3Call(endpoint, aliceCreds, 'DescribeConversionTasks', { ConversionTaskIds: [task.ConversionTaskId] })).ConversionTasks;
    expect(converting.ImportInstance.Volumes[0]).toMatchObject({
      BytesConverted: 99999, Status: 'active', StatusMessage: 'Converting image',
      Image: { Checksum: 'ab'.repeat(32) }, Volume: { Size: 2, Id: 'vol-0123456789abcdef0' },
    });

    await boto3Call(endpoint, aliceCreds, 'CancelConversionTask', { ConversionTaskId: task.ConversionTaskId });
    const [cancelling] = (await boto3Call(endpoint, aliceCreds, 'DescribeConversionTasks', { ConversionTaskIds: [task.ConversionTaskId] })).ConversionTasks;
    expect(cancelling.State).toBe('cancelling');
    expect(cancelling.ImportInstance.Volumes[0].Status).toBe('cancelling');
  });

  test('client-ec2: a Linux import (no Platform), described with the extension elements in the XML', async () => {
    const imported = await sdk.send(new ImportInstanceCommand({ LaunchSpecification: { Architecture: 'arm64' }, DiskImages: [diskImage({ Format: 'raw' })] } as any));
    const task = imported.ConversionTask!;
    expect(task.ImportInstance!.Platform).toBeUndefined();
    expect(task.ImportInstance!.InstanceId).toMatch(/^i-[0-9a-f]{17}$/);
    expect(task.ImportInstance!.Volumes![0]).toMatchObject({ AvailabilityZone: 'us-east-1a', Image: { Format: 'RAW' }, Status: 'active' });
    await pretendConverted(task.ConversionTaskId!);
    const shown = (await sdk.send(new DescribeConversionTasksCommand({ ConversionTaskIds: [task.ConversionTaskId!] }))).ConversionTasks![0];
    expect(shown.ImportInstance!.InstanceId).toBe(task.ImportInstance!.InstanceId);
    expect(shown.ImportInstance!.Volumes![0].Volume!.Id).toBe('vol-0123456789abcdef0');
    const raw = await signedQuery(endpoint, aliceCreds, { Action: 'DescribeConversionTasks', 'ConversionTaskId.1': task.ConversionTaskId! });
    const item = xml.parse(raw.body).DescribeConversionTasksResponse.conversionTasks.item.importInstance.volumes.item;
    expect(item.imageLocation).toBe(`s3://image-store/${task.ConversionTaskId}/disk.raw`);
    expect(item.imageSha256).toBe('ab'.repeat(32));
    expect(item.progress).toBe(60);
  });

  test('several disks (boto3 and client-ec2): one conversion task, the boot disk first, every disk a volume; Platform Linux; cancel ends them all', async () => {
    const disks = [diskImage(), diskImage({ Format: 'RAW' }), { ...diskImage(), Volume: { Size: 7 }, Description: 'logs' }];
    const { ConversionTask: byBoto } = await boto3Call(endpoint, aliceCreds, 'ImportInstance', { Platform: 'Linux', LaunchSpecification: launch, DiskImages: disks });
    expect(byBoto.ImportInstance.Platform).toBeUndefined();
    expect(byBoto.ImportInstance.Volumes.map((v: any) => [v.Image.Format, v.Volume.Size, v.Description, v.Status])).toEqual([
      ['VMDK', 2, 'root <disk>', 'active'], ['RAW', 2, 'root <disk>', 'active'], ['VMDK', 7, 'logs', 'active'],
    ]);
    const bySdk = (await sdk.send(new ImportInstanceCommand({ Platform: 'Windows', LaunchSpecification: launch, DiskImages: disks } as any))).ConversionTask!;
    expect(bySdk.ImportInstance!.Volumes!.map((v) => v.Volume!.Size)).toEqual([2, 2, 7]);
    const described = await sdk.send(new DescribeConversionTasksCommand({ ConversionTaskIds: [byBoto.ConversionTaskId, bySdk.ConversionTaskId!] }));
    expect(described.ConversionTasks!.map((t) => t.ImportInstance!.Volumes!.length)).toEqual([3, 3]);
    // Listing shows conversion tasks only: the further disks are not tasks of their own.
    const all = (await boto3Call(endpoint, aliceCreds, 'DescribeConversionTasks', {})).ConversionTasks.map((t: any) => t.ConversionTaskId);
    const memberIds = (await store.get(byBoto.ConversionTaskId))!.request.instance!.volumeTaskIds!;
    expect(memberIds).toHaveLength(2);
    expect(all).toContain(byBoto.ConversionTaskId);
    for (const id of memberIds) expect(all).not.toContain(id);
    await expect(boto3Call(endpoint, aliceCreds, 'DescribeConversionTasks', { ConversionTaskIds: [memberIds[0]] })).rejects.toMatchObject({ code: 'InvalidConversionTaskId' });
    await boto3Call(endpoint, aliceCreds, 'CancelConversionTask', { ConversionTaskId: byBoto.ConversionTaskId, ReasonMessage: 'all of them' });
    const after = (await boto3Call(endpoint, aliceCreds, 'DescribeConversionTasks', { ConversionTaskIds: [byBoto.ConversionTaskId] })).ConversionTasks[0];
    expect(after).toMatchObject({ State: 'cancelled', StatusMessage: 'all of them' });
    expect(after.ImportInstance.Volumes.map((v: any) => v.Status)).toEqual(['cancelled', 'cancelled', 'cancelled']);
  });

  test('refused: 27 disks, none, a bad architecture, Platform Solaris (boto3 and client-ec2)', async () => {
    const cases: [any, string, RegExp][] = [
      [{ LaunchSpecification: launch, DiskImages: Array.from({ length: 27 }, () => diskImage()) }, 'InvalidParameterValue', /at most 26/],
      [{ Platform: 'Windows', LaunchSpecification: launch }, 'MissingParameter', /DiskImage\.1\.Image\.Format/],
      [{ LaunchSpecification: { ...launch, Architecture: 'sparc64' }, DiskImages: [diskImage()] }, 'InvalidParameterValue', /LaunchSpecification\.Architecture/],
      [{ Platform: 'Solaris', DiskImages: [diskImage()] }, 'InvalidParameterValue', /Windows or Linux/],
      [{ DiskImages: [diskImage({ Url: 'http://169.254.169.254/m' })] }, 'InvalidParameterValue', /DiskImage\.1\.Image\.ImportManifestUrl.*not an object-storage endpoint/],
    ];
    const outcomes = await boto3Calls(endpoint, cases.map(([params]) => ({ creds: aliceCreds, operation: 'ImportInstance', params })));
    for (const [i, [params, code, message]] of cases.entries()) {
      expect(outcomes[i]).toMatchObject({ ok: false, error: { code, message: expect.stringMatching(message) } });
      const error: any = await sdk.send(new ImportInstanceCommand(params)).catch((e) => e);
      expect(error.name).toBe(code);
      expect(error.message).toMatch(message);
    }
  });
});

describe('waiters from the botocore and SDK models', () => {
  test('ConversionTaskCancelled succeeds for a cancelled task, ConversionTaskCompleted gives up on it', async () => {
    const id = (await sdk.send(new ImportVolumeCommand(importParams()))).ConversionTask!.ConversionTaskId!;
    await sdk.send(new CancelConversionTaskCommand({ ConversionTaskId: id }));
    await expect(boto3Wait(endpoint, aliceCreds, 'conversion_task_cancelled', { ConversionTaskIds: [id] }, { maxAttempts: 2 })).resolves.toBeUndefined();
    // The Completed waiter fails fast on a cancelled task: that needs State parsed right.
    await expect(boto3Wait(endpoint, aliceCreds, 'conversion_task_completed', { ConversionTaskIds: [id] }, { maxAttempts: 2 })).rejects.toMatchObject({ code: 'WaiterError' });
    const result = await waitUntilConversionTaskCancelled({ client: sdk, maxWaitTime: 30 }, { ConversionTaskIds: [id] });
    expect(result.state).toBe('SUCCESS');
  });
});

describe('errors as real clients see them', () => {
  const wrongSecret: Ec2Credentials = { ...aliceCreds, secretAccessKey: 'not-the-secret' };
  const unknownKey: Ec2Credentials = { accessKeyId: 'AKIANOBODY000000000', secretAccessKey: 'x' };
  let aliceTaskId = '';
  let finishedTaskId = '';

  beforeAll(async () => {
    aliceTaskId = (await sdk.send(new ImportVolumeCommand(importParams()))).ConversionTask!.ConversionTaskId!;
    finishedTaskId = (await sdk.send(new ImportVolumeCommand(importParams()))).ConversionTask!.ConversionTaskId!;
    await sdk.send(new CancelConversionTaskCommand({ ConversionTaskId: finishedTaskId }));
  });

  type Case = { name: string; creds: Ec2Credentials; operation: 'ImportVolume' | 'DescribeConversionTasks' | 'CancelConversionTask'; params: () => any; code: string; message?: RegExp; status?: number };
  const cases: Case[] = [
    { name: 'wrong secret', creds: wrongSecret, operation: 'DescribeConversionTasks', params: () => ({}), code: 'SignatureDoesNotMatch', status: 403 },
    { name: 'unknown access key', creds: unknownKey, operation: 'DescribeConversionTasks', params: () => ({}), code: 'AuthFailure', status: 401 },
    { name: 'missing Image.Bytes', creds: aliceCreds, operation: 'ImportVolume', params: () => ({ Image: { Format: 'RAW', ImportManifestUrl: MANIFEST_URL }, Volume: { Size: 1 } }), code: 'MissingParameter', message: /Image\.Bytes/ },
    { name: 'missing Volume.Size', creds: aliceCreds, operation: 'ImportVolume', params: () => ({ Image: { Format: 'RAW', Bytes: 10, ImportManifestUrl: MANIFEST_URL } }), code: 'MissingParameter', message: /Volume\.Size/ },
    { name: 'bad format', creds: aliceCreds, operation: 'ImportVolume', params: () => importParams({ Format: 'QCOW2' }), code: 'InvalidParameterValue', message: /QCOW2.*RAW, VMDK, VHD/ },
    { name: 'foreign manifest host', creds: aliceCreds, operation: 'ImportVolume', params: () => importParams({ Url: 'http://169.254.169.254/latest/meta-data' }), code: 'InvalidParameterValue', message: /manifest URL host 169\.254\.169\.254 is not an object-storage endpoint of this service/ },
    { name: 'Volume.Size smaller than a RAW image', creds: aliceCreds, operation: 'ImportVolume', params: () => importParams({ Format: 'RAW', Bytes: 3 * 1024 ** 3 + 1, Size: 3 }), code: 'InvalidParameterValue', message: /3221225473 bytes.*3 GiB.*at least 4 GiB/ },
    { name: 'unknown task id', creds: aliceCreds, operation: 'DescribeConversionTasks', params: () => ({ ConversionTaskIds: ['import-vol-00000000'] }), code: 'InvalidConversionTaskId', message: /import-vol-00000000/ },
    { name: 'malformed task id', creds: aliceCreds, operation: 'CancelConversionTask', params: () => ({ ConversionTaskId: 'i-123' }), code: 'InvalidConversionTaskId.Malformed' },
    { name: "another account's task is invisible", creds: bobCreds, operation: 'DescribeConversionTasks', params: () => ({ ConversionTaskIds: [aliceTaskId] }), code: 'InvalidConversionTaskId', message: new RegExp(aliceTaskId) },
    { name: "another account's task is not cancellable", creds: bobCreds, operation: 'CancelConversionTask', params: () => ({ ConversionTaskId: aliceTaskId }), code: 'InvalidConversionTaskId' },
    { name: 'cancel of a finished task', creds: aliceCreds, operation: 'CancelConversionTask', params: () => ({ ConversionTaskId: finishedTaskId }), code: 'IncorrectState' },
    { name: 'DryRun of ImportVolume', creds: aliceCreds, operation: 'ImportVolume', params: () => ({ ...importParams(), DryRun: true }), code: 'DryRunOperation', status: 412, message: /^Request would have succeeded, but DryRun flag is set\.$/ },
    { name: 'DryRun of CancelConversionTask', creds: aliceCreds, operation: 'CancelConversionTask', params: () => ({ ConversionTaskId: aliceTaskId, DryRun: true }), code: 'DryRunOperation' },
  ];

  const sdkCommand = (operation: Case['operation'], params: any) =>
    operation === 'ImportVolume' ? new ImportVolumeCommand(params) : operation === 'DescribeConversionTasks' ? new DescribeConversionTasksCommand(params) : new CancelConversionTaskCommand(params);

  // One python process for the whole table: boto3 takes about a second to start.
  let boto3Outcomes: Boto3Outcome[] = [];
  beforeAll(async () => {
    boto3Outcomes = await boto3Calls(
      endpoint,
      cases.map((c) => ({ creds: c.creds, operation: c.operation, params: c.params() })),
    );
  });

  test.each(cases.map((c, index) => ({ ...c, index })))('boto3: $name → $code', ({ index, code, message, status }) => {
    const outcome = boto3Outcomes[index];
    expect(outcome.ok).toBe(false);
    const error = (outcome as { error: Ec2ClientError }).error;
    expect(error).toBeInstanceOf(Ec2ClientError);
    expect(error.code).toBe(code);
    if (message) expect(error.message).toMatch(message);
    if (status) expect(error.httpStatus).toBe(status);
    expect(error.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  test.each(cases)('client-ec2: $name → $code', async ({ creds, operation, params, code, message, status }) => {
    const client = sdkClient(endpoint, creds);
    try {
      const error = await client.send(sdkCommand(operation, params()) as any).then(
        () => undefined,
        (e: any) => e,
      );
      expect(error?.name).toBe(code);
      if (message) expect(error.message).toMatch(message);
      if (status) expect(error.$metadata.httpStatusCode).toBe(status);
    } finally {
      client.destroy();
    }
  });

  test('DryRun creates nothing and publishes nothing', async () => {
    const tasksBefore = (await store.list({ accountId: ALICE.accountId })).length;
    const eventsBefore = events.length;
    await expect(boto3Call(endpoint, aliceCreds, 'ImportVolume', { ...importParams(), DryRun: true })).rejects.toMatchObject({ code: 'DryRunOperation' });
    expect((await store.list({ accountId: ALICE.accountId })).length).toBe(tasksBefore);
    expect(events.length).toBe(eventsBefore);
    expect((await store.get(aliceTaskId))!.state).toBe('pending-upload');
  });

  test('a failed validation beats DryRun', async () => {
    await expect(boto3Call(endpoint, aliceCreds, 'ImportVolume', { ...importParams({ Format: 'ISO' }), DryRun: true })).rejects.toMatchObject({ code: 'InvalidParameterValue' });
  });

  test('an unsigned request → AuthFailure (boto3 UNSIGNED)', async () => {
    await expect(boto3Call(endpoint, null, 'DescribeConversionTasks', {})).rejects.toMatchObject({ code: 'AuthFailure', httpStatus: 401 });
  });

  test('two accounts: Bob can neither describe, cancel nor tag any of Alice’s tasks (answered as missing ones), and hers are untouched', async () => {
    const userBucket = { S3Bucket: 'alice-bucket', S3Key: 'disk.raw' };
    const [volume, instance, image, snapshot] = (await boto3Calls(endpoint, [
      { creds: aliceCreds, operation: 'ImportVolume', params: importParams() },
      { creds: aliceCreds, operation: 'ImportInstance', params: { DiskImages: [importParams(), importParams()].map((p) => ({ Image: p.Image, Volume: p.Volume })) } },
      { creds: aliceCreds, operation: 'ImportImage', params: { DiskContainers: [{ Format: 'RAW', UserBucket: userBucket }] } },
      { creds: aliceCreds, operation: 'ImportSnapshot', params: { DiskContainer: { Format: 'RAW', UserBucket: userBucket } } },
    ])).map((o) => (o as any).response);
    const volumeTask = volume.ConversionTask.ConversionTaskId;
    const instanceTask = instance.ConversionTask.ConversionTaskId;
    const [diskTask] = (await store.get(instanceTask))!.request.instance!.volumeTaskIds!;
    const conversionIds = [volumeTask, instanceTask, diskTask];
    const outcomes = await boto3Calls(endpoint, [
      ...conversionIds.map((id) => ({ creds: bobCreds, operation: 'DescribeConversionTasks', params: { ConversionTaskIds: [id] } })),
      ...conversionIds.map((id) => ({ creds: bobCreds, operation: 'CancelConversionTask', params: { ConversionTaskId: id } })),
      { creds: bobCreds, operation: 'DescribeImportImageTasks', params: { ImportTaskIds: [image.ImportTaskId] } },
      { creds: bobCreds, operation: 'DescribeImportSnapshotTasks', params: { ImportTaskIds: [snapshot.ImportTaskId] } },
      { creds: bobCreds, operation: 'CancelImportTask', params: { ImportTaskId: image.ImportTaskId } },
      { creds: bobCreds, operation: 'CancelImportTask', params: { ImportTaskId: snapshot.ImportTaskId } },
      { creds: bobCreds, operation: 'CreateTags', params: { Resources: [image.ImportTaskId], Tags: [{ Key: 'mine', Value: 'now' }] } },
      { creds: bobCreds, operation: 'DescribeImportImageTasks', params: {} },
      { creds: bobCreds, operation: 'DescribeImportSnapshotTasks', params: {} },
      { creds: bobCreds, operation: 'DescribeConversionTasks', params: {} },
    ]);
    expect(outcomes.map((o) => (o.ok ? 'ok' : o.error.code))).toEqual([
      ...conversionIds.map(() => 'InvalidConversionTaskId'),
      ...conversionIds.map(() => 'InvalidConversionTaskId'),
      'InvalidConversionTaskId', 'InvalidConversionTaskId', 'InvalidConversionTaskId', 'InvalidConversionTaskId',
      'InvalidID', 'ok', 'ok', 'ok',
    ]);
    // The same words as for an id nobody has: nothing tells Bob that Alice's exists.
    const nobody = await boto3Call(endpoint, bobCreds, 'DescribeConversionTasks', { ConversionTaskIds: ['import-vol-00000000'] }).catch((e) => e);
    expect((outcomes[0] as any).error.message).toBe(nobody.message.replace('import-vol-00000000', volumeTask));
    const listed = (outcomes.slice(-3) as any[]).flatMap((o) => [...(o.response.ImportImageTasks ?? []), ...(o.response.ImportSnapshotTasks ?? []), ...(o.response.ConversionTasks ?? [])]);
    expect(listed.map((t: any) => t.ImportTaskId ?? t.ConversionTaskId)).toEqual(expect.not.arrayContaining([...conversionIds, image.ImportTaskId, snapshot.ImportTaskId]));
    for (const id of [...conversionIds, image.ImportTaskId, snapshot.ImportTaskId]) {
      const doc = (await store.get(id))!;
      expect([id, doc.accountId, doc.state, doc.cancelRequested, doc.tags]).toEqual([id, ALICE.accountId, 'pending-upload', undefined, undefined]);
    }
  });

  test('Bob sees none of Alice’s tasks', async () => {
    const bobs = await boto3Call(endpoint, bobCreds, 'DescribeConversionTasks', {});
    expect(bobs.ConversionTasks.map((t: any) => t.ConversionTaskId)).not.toContain(aliceTaskId);
  });

  test('BundleInstance of an instance that does not exist → InvalidInstanceID.NotFound (client-ec2 and boto3)', async () => {
    const error: any = await sdk.send(new BundleInstanceCommand({ InstanceId: 'i-0123456789abcdef0', Storage: { S3: { Bucket: 'bucket', Prefix: 'planned' } } })).catch((e) => e);
    expect(error.name).toBe('InvalidInstanceID.NotFound');
    await expect(boto3Call(endpoint, aliceCreds, 'BundleInstance', { InstanceId: 'i-0123456789abcdef0', Storage: { S3: { Bucket: 'bucket', Prefix: 'planned' } } })).rejects.toMatchObject({ code: 'InvalidInstanceID.NotFound' });
  });

  test('ImportImage and ImportSnapshot validate every parameter before anything starts (client-ec2 and boto3)', async () => {
    const error: any = await sdk.send(new ImportImageCommand({ Description: 'x' })).catch((e) => e);
    expect([error.name, error.message]).toEqual(['MissingParameter', expect.stringContaining('DiskContainer.1')]);
    const dry: any = await sdk.send(new ImportImageCommand({ DryRun: true, DiskContainers: [{ Format: 'VHDX', UserBucket: { S3Bucket: 'my-bucket', S3Key: 'k.vhdx' } }] })).catch((e) => e);
    expect(dry.name).toBe('DryRunOperation');
    const kms: any = await sdk.send(new ImportImageCommand({ KmsKeyId: 'k', DiskContainers: [{ Format: 'RAW', UserBucket: { S3Bucket: 'my-bucket', S3Key: 'k' } }] })).catch((e) => e);
    expect([kms.name, kms.message]).toEqual(['InvalidParameterValue', expect.stringContaining('Encrypted imports are not supported')]);
    await expect(boto3Call(endpoint, aliceCreds, 'ImportSnapshot', {})).rejects.toMatchObject({ code: 'MissingParameter' });
    await expect(boto3Call(endpoint, aliceCreds, 'ImportSnapshot', { DiskContainer: { Format: 'ISO', UserBucket: { S3Bucket: 'my-bucket', S3Key: 'k' } } })).rejects.toMatchObject({ code: 'InvalidParameterValue' });
    await expect(boto3Call(endpoint, aliceCreds, 'ImportSnapshot', { DiskContainer: { Format: 'RAW', Url: 'http://attacker.example/x' } })).rejects.toMatchObject({ code: 'InvalidParameterValue' });
    await expect(boto3Call(endpoint, aliceCreds, 'ImportImage', { DiskContainers: [{ Format: 'RAW', UserBucket: { S3Bucket: 'b', S3Key: 'k' } }, { Format: 'RAW', UserBucket: { S3Bucket: 'b', S3Key: 'k2' } }] }))
      .rejects.toMatchObject({ code: 'InvalidParameterValue' });
  });

  test('an action EC2 does not have → InvalidAction (signed by @smithy/signature-v4)', async () => {
    const raw = await signedQuery(endpoint, aliceCreds, { Action: 'MakeCoffee' });
    expect(raw.status).toBe(400);
    const error = xml.parse(raw.body).Response.Errors.Error;
    expect(error.Code).toBe('InvalidAction');
    expect(error.Message).toMatch(/MakeCoffee/);
  });
});

describe('AWS CLI', () => {
  const cli = awsCliPath();
  (cli ? test : test.skip)(`aws ec2 describe-conversion-tasks (${cli ?? 'no aws cli installed'})`, async () => {
    const id = (await sdk.send(new ImportVolumeCommand(importParams()))).ConversionTask!.ConversionTaskId!;
    const ok = await awsCli(cli!, endpoint, aliceCreds, ['describe-conversion-tasks', '--conversion-task-ids', id]);
    expect(ok.stderr).toBe('');
    expect(ok.exitCode).toBe(0);
    const parsed = JSON.parse(ok.stdout);
    expect(parsed.ConversionTasks).toHaveLength(1);
    expect(parsed.ConversionTasks[0]).toMatchObject({ ConversionTaskId: id, State: 'active', ImportVolume: { Image: { Format: 'VMDK' }, Volume: { Size: 2 } } });

    // The AWS CLI no longer has import-instance; it still describes an import-instance task.
    const { ConversionTask } = await boto3Call(endpoint, aliceCreds, 'ImportInstance', {
      Platform: 'Windows', DiskImages: [{ Image: { Format: 'VMDK', Bytes: 1000, ImportManifestUrl: MANIFEST_URL }, Volume: { Size: 1 } }],
    });
    const listed = await awsCli(cli!, endpoint, aliceCreds, ['describe-conversion-tasks', '--conversion-task-ids', ConversionTask.ConversionTaskId]);
    expect(listed.exitCode).toBe(0);
    expect(JSON.parse(listed.stdout).ConversionTasks[0]).toMatchObject({
      ConversionTaskId: ConversionTask.ConversionTaskId,
      ImportInstance: { Platform: 'Windows', InstanceId: ConversionTask.ImportInstance.InstanceId, Volumes: [{ Image: { Format: 'VMDK', Size: 1000 }, Volume: { Size: 1 }, Status: 'active' }] },
    });

    const bad = await awsCli(cli!, endpoint, aliceCreds, ['describe-conversion-tasks', '--conversion-task-ids', 'import-vol-0000ffff']);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toMatch(/InvalidConversionTaskId/);
  });
});
