/** ImportInstance on a real (in-memory SQLite) task store: parsing, several disks, the shared disk checks, rendering, cancelling. */
import type { CloudEvent } from 'cloudevents';
import type { ActionContext } from '../../../gateway/actions/action';
import { conversionTaskXml } from '../../../gateway/actions/conversion-task-xml';
import { describeConversionTasks } from '../../../gateway/actions/describe-conversion-tasks';
import { importInstance, MAX_DISK_IMAGES } from '../../../gateway/actions/import-instance';
import { importVolume } from '../../../gateway/actions/import-volume';
import { runAction } from '../../../gateway/actions';
import { QueryParams } from '../../../gateway/query-request';
import { SqliteTaskStore } from '../../../tasks/sqlite-store';
import { updateTask } from '../../../tasks/state-machine';

let store: SqliteTaskStore;
let ctx: ActionContext;
let events: CloudEvent<unknown>[];
const MANIFEST = 'https://objects.test/b/disk.vmdk.manifest.xml';

beforeEach(() => {
  store = SqliteTaskStore.open(':memory:');
  events = [];
  ctx = {
    caller: { accountId: '555555555555', accessKeyId: 'AKID' },
    tasks: store,
    publish: async (event) => void events.push(event),
    region: 'us-west-2',
    allowedObjectHosts: ['objects.test'],
    taskLifetimeMs: 60_000,
    now: () => new Date(),
  };
});
afterEach(() => store.close());

const params = (entries: Record<string, string>) => new QueryParams(Object.entries(entries));
const disk = (n = 1, extra: Record<string, string> = {}): Record<string, string> => ({
  [`DiskImage.${n}.Image.Format`]: 'VMDK',
  [`DiskImage.${n}.Image.Bytes`]: '1048576',
  [`DiskImage.${n}.Image.ImportManifestUrl`]: MANIFEST,
  [`DiskImage.${n}.Volume.Size`]: '2',
  ...extra,
});
const call = (entries: Record<string, string>) => runAction('ImportInstance', params(entries), ctx) as Promise<any>;

test('every LaunchSpecification field is kept; the instance id is allocated and returned; import.requested is published', async () => {
  const out = await call({
    ...disk(1, { 'DiskImage.1.Description': 'boot disk' }),
    Platform: 'Windows',
    Description: 'web server',
    'LaunchSpecification.Architecture': 'i386',
    'LaunchSpecification.InstanceType': 'm5.large',
    'LaunchSpecification.Placement.AvailabilityZone': 'us-west-2c',
    'LaunchSpecification.GroupName.1': 'web',
    'LaunchSpecification.GroupName.2': 'ssh',
    'LaunchSpecification.GroupId.1': 'sg-1a2b3c4d',
    'LaunchSpecification.SubnetId': 'subnet-0123456789abcdef0',
    'LaunchSpecification.PrivateIpAddress': '10.0.0.12',
    'LaunchSpecification.UserData.Data': Buffer.from('#!/bin/sh\necho hi\n').toString('base64'),
    'LaunchSpecification.Monitoring': 'true',
    'LaunchSpecification.InstanceInitiatedShutdownBehavior': 'terminate',
  });
  const task = out.conversionTask;
  expect(task.conversionTaskId).toMatch(/^import-i-[0-9a-f]{8}$/);
  expect(task.state).toBe('active');
  expect(task.importVolume).toBeUndefined();
  expect(task.importInstance).toMatchObject({ description: 'web server', platform: 'Windows', instanceId: expect.stringMatching(/^i-[0-9a-f]{17}$/) });
  expect(task.importInstance.volumes).toEqual([
    expect.objectContaining({
      availabilityZone: 'us-west-2c',
      description: 'boot disk',
      bytesConverted: 0,
      image: { format: 'VMDK', size: 1048576, importManifestUrl: MANIFEST, checksum: undefined },
      volume: { size: 2, id: undefined },
      status: 'active',
      statusMessage: 'Pending import-image upload',
    }),
  ]);

  const stored = (await store.get(task.conversionTaskId))!;
  expect(stored).toMatchObject({ kind: 'import-instance', state: 'pending-upload', accountId: '555555555555' });
  expect(stored.request).toEqual({
    format: 'VMDK',
    bytes: 1048576,
    manifestUrl: MANIFEST,
    volumeSizeGiB: 2,
    availabilityZone: 'us-west-2c',
    description: 'boot disk',
    instance: {
      instanceId: task.importInstance.instanceId,
      platform: 'Windows',
      architecture: 'i386',
      instanceType: 'm5.large',
      description: 'web server',
      groupNames: ['web', 'ssh'],
      groupIds: ['sg-1a2b3c4d'],
      subnetId: 'subnet-0123456789abcdef0',
      privateIpAddress: '10.0.0.12',
      userData: Buffer.from('#!/bin/sh\necho hi\n').toString('base64'),
      monitoring: true,
      instanceInitiatedShutdownBehavior: 'terminate',
    },
  });
  expect(events).toHaveLength(1);
  expect(events[0]).toMatchObject({ type: 'io.imaging.import.requested', data: { taskId: stored.id, accountId: '555555555555' } });
});

test('a Linux import: Platform and the launch specification left out; defaults filled in', async () => {
  const input = await importInstance.validate(params(disk()), ctx);
  expect(input).toEqual({
    disks: [{ format: 'VMDK', bytes: 1048576, manifestUrl: MANIFEST, volumeSizeGiB: 2, availabilityZone: 'us-west-2a' }],
    instance: { architecture: 'x86_64' },
  });
  const out: any = await importInstance.run(input, ctx);
  expect(out.conversionTask.importInstance.platform).toBeUndefined();
  expect(out.conversionTask.importInstance.instanceId).toMatch(/^i-[0-9a-f]{17}$/);
});

test('Platform is Windows or Linux, case-insensitive (Linux is what leaving it out means); anything else is refused', async () => {
  expect((await importInstance.validate(params({ ...disk(), Platform: 'windows' }), ctx)).instance.platform).toBe('Windows');
  expect((await importInstance.validate(params({ ...disk(), Platform: 'Linux' }), ctx)).instance.platform).toBeUndefined();
  await expect(importInstance.validate(params({ ...disk(), Platform: 'Solaris' }), ctx)).rejects.toMatchObject({
    code: 'InvalidParameterValue',
    message: expect.stringMatching(/Platform.*Windows or Linux/),
  });
});

test('each call allocates a new instance id', async () => {
  const input = await importInstance.validate(params(disk()), ctx);
  const a: any = await importInstance.run(input, ctx);
  const b: any = await importInstance.run(input, ctx);
  expect(a.conversionTask.importInstance.instanceId).not.toBe(b.conversionTask.importInstance.instanceId);
});

describe('disk images', () => {
  test('none → MissingParameter naming DiskImage.1', async () => {
    await expect(call({ Platform: 'Windows', 'LaunchSpecification.Architecture': 'x86_64' })).rejects.toMatchObject({
      code: 'MissingParameter',
      message: expect.stringContaining('DiskImage.1.Image.Format'),
    });
  });

  test('three: one conversion task; DiskImage.1 is the instance task, the others volume tasks named by it and naming it; all published', async () => {
    const out = await call({ ...disk(1), ...disk(3, { 'DiskImage.3.Description': 'logs', 'DiskImage.3.Volume.Size': '5' }), ...disk(2, { 'DiskImage.2.Image.Format': 'RAW' }) });
    const id = out.conversionTask.conversionTaskId;
    const stored = (await store.get(id))!;
    const memberIds = stored.request.instance!.volumeTaskIds!;
    expect(memberIds).toHaveLength(2);
    const [second, third] = await Promise.all(memberIds.map((m) => store.get(m)));
    expect(second).toMatchObject({ kind: 'import-volume', state: 'pending-upload', request: { format: 'RAW', partOf: { taskId: id, diskIndex: 2 }, availabilityZone: 'us-west-2a' } });
    expect(third).toMatchObject({ kind: 'import-volume', request: { format: 'VMDK', volumeSizeGiB: 5, description: 'logs', partOf: { taskId: id, diskIndex: 3 } } });
    expect(events.map((e: any) => e.data.taskId).sort()).toEqual([id, ...memberIds].sort());
    expect(out.conversionTask.importInstance.volumes.map((v: any) => [v.image.format, v.volume.size, v.status])).toEqual([['VMDK', 2, 'active'], ['RAW', 2, 'active'], ['VMDK', 5, 'active']]);
    // One conversion task: the volume tasks are shown only as the instance's volumes.
    const listed = await describeConversionTasks.validate(params({}), ctx);
    expect(listed.tasks.map((t) => t.id)).toEqual([id]);
    await expect(describeConversionTasks.validate(params({ 'ConversionTaskId.1': memberIds[0] }), ctx)).rejects.toMatchObject({ code: 'InvalidConversionTaskId' });
    await expect(runAction('CancelConversionTask', params({ ConversionTaskId: memberIds[0] }), ctx)).rejects.toMatchObject({ code: 'InvalidConversionTaskId' });
  });

  test('the instance shows every disk; one disk failing makes it cancelled with that disk\'s message, naming it; cancelling ends them all', async () => {
    const out = await call({ ...disk(1), ...disk(2) });
    const id = out.conversionTask.conversionTaskId;
    const [memberId] = (await store.get(id))!.request.instance!.volumeTaskIds!;
    await updateTask(store, memberId, (doc) => ({ ...doc, state: 'failed', statusMessage: 'ClientError: not a VMDK' }));
    const described = await describeConversionTasks.validate(params({ 'ConversionTaskId.1': id }), ctx);
    const [item] = ((await describeConversionTasks.run(described, ctx)) as any).conversionTasks;
    expect(item).toMatchObject({ state: 'cancelled', statusMessage: `ClientError: disk 2 (${memberId}) did not import: not a VMDK` });
    expect(item.importInstance.volumes.map((v: any) => v.status)).toEqual(['active', 'cancelled']);

    const other = await call({ ...disk(1), ...disk(2) });
    const otherId = other.conversionTask.conversionTaskId;
    await runAction('CancelConversionTask', params({ ConversionTaskId: otherId, ReasonMessage: 'wrong disks' }), ctx);
    const ids = [otherId, ...(await store.get(otherId))!.request.instance!.volumeTaskIds!];
    for (const t of ids) expect(await store.get(t)).toMatchObject({ state: 'cancelled', statusMessage: 'wrong disks' });
  });

  test('the boot disk failing names disk 1; a further disk that completed before shows cancelled with its message', async () => {
    const out = await call({ ...disk(1), ...disk(2) });
    const id = out.conversionTask.conversionTaskId;
    const [memberId] = (await store.get(id))!.request.instance!.volumeTaskIds!;
    await updateTask(store, memberId, (doc) => ({ ...doc, state: 'completed', statusMessage: 'Volume vol-0123456789abcdef0 removed: the instance did not import' }));
    await updateTask(store, id, (doc) => ({ ...doc, state: 'failed', statusMessage: 'ClientError: no operating system was found' }));
    const described = await describeConversionTasks.validate(params({ 'ConversionTaskId.1': id }), ctx);
    const [item] = ((await describeConversionTasks.run(described, ctx)) as any).conversionTasks;
    expect(item).toMatchObject({ state: 'cancelled', statusMessage: `ClientError: disk 1 (${id}) did not import: no operating system was found` });
    expect(item.importInstance.volumes.map((v: any) => [v.status, v.statusMessage])).toEqual([
      ['cancelled', 'ClientError: no operating system was found'],
      ['cancelled', 'Volume vol-0123456789abcdef0 removed: the instance did not import'],
    ]);
  });

  test('a further disk that failed before the instance task was recorded ends the instance at once', async () => {
    const create = store.create.bind(store);
    const spy = jest.spyOn(store, 'create').mockImplementation(async (doc) => {
      // The further disk fails in the moment between its task and the instance's being recorded.
      if (doc.kind === 'import-instance') {
        await updateTask(store, doc.request.instance!.volumeTaskIds![0], (d) => ({ ...d, state: 'failed', statusMessage: 'ClientError: not a VMDK' }));
      }
      return create(doc);
    });
    try {
      const out = await call({ ...disk(1), ...disk(2), ...disk(3) });
      const id = out.conversionTask.conversionTaskId;
      const [failed, other] = (await store.get(id))!.request.instance!.volumeTaskIds!;
      const reason = `ClientError: disk 2 (${failed}) did not import: not a VMDK`;
      expect(out.conversionTask).toMatchObject({ state: 'cancelled', statusMessage: reason });
      expect(await store.get(id)).toMatchObject({ state: 'cancelled', statusMessage: reason });
      expect(await store.get(other)).toMatchObject({ state: 'cancelled', statusMessage: reason });
    } finally {
      spy.mockRestore();
    }
  });

  test(`more than ${MAX_DISK_IMAGES} → InvalidParameterValue; a bad further disk names its DiskImage.N; nothing stored or published`, async () => {
    const many = Object.assign({}, ...Array.from({ length: MAX_DISK_IMAGES + 1 }, (_, i) => disk(i + 1)));
    await expect(call(many)).rejects.toMatchObject({ code: 'InvalidParameterValue', message: expect.stringMatching(/at most 26/) });
    await expect(call({ ...disk(1), ...disk(2, { 'DiskImage.2.Volume.Size': '0' }) })).rejects.toMatchObject({ message: expect.stringMatching(/DiskImage\.2\.Volume\.Size/) });
    expect(await store.list({ accountId: '555555555555' })).toEqual([]);
    expect(events).toEqual([]);
  });

  test('a lone DiskImage.3 is the boot disk; its errors name DiskImage.3', async () => {
    expect((await importInstance.validate(params(disk(3)), ctx)).disks[0].volumeSizeGiB).toBe(2);
    await expect(importInstance.validate(params(disk(3, { 'DiskImage.3.Image.Format': 'QCOW2' })), ctx)).rejects.toMatchObject({
      message: expect.stringMatching(/parameter DiskImage\.3\.Image\.Format is invalid/),
    });
  });

  test('DiskImage.0 → InvalidParameter', async () => {
    await expect(call(disk(0))).rejects.toMatchObject({ code: 'InvalidParameter' });
  });
});

describe('the disk is checked exactly as ImportVolume checks it', () => {
  const cases: [string, Record<string, string>, Record<string, string>, string, RegExp][] = [
    ['format', { 'DiskImage.1.Image.Format': 'qcow2' }, { 'Image.Format': 'qcow2' }, 'InvalidParameterValue', /qcow2.*RAW, VMDK, VHD/],
    ['bytes', { 'DiskImage.1.Image.Bytes': '-1' }, { 'Image.Bytes': '-1' }, 'InvalidParameterValue', /positive whole number/],
    ['missing bytes', { 'DiskImage.1.Image.Bytes': '' }, { 'Image.Bytes': '' }, 'MissingParameter', /Image\.Bytes/],
    ['volume too large', { 'DiskImage.1.Volume.Size': '20000' }, { 'Volume.Size': '20000' }, 'InvalidParameterValue', /16384 GiB/],
    ['RAW larger than the volume', { 'DiskImage.1.Image.Format': 'RAW', 'DiskImage.1.Image.Bytes': String(2 * 1024 ** 3 + 1) }, { 'Image.Format': 'RAW', 'Image.Bytes': String(2 * 1024 ** 3 + 1) }, 'InvalidParameterValue', /at least 3 GiB/],
    ['foreign manifest host', { 'DiskImage.1.Image.ImportManifestUrl': 'http://169.254.169.254/m' }, { 'Image.ImportManifestUrl': 'http://169.254.169.254/m' }, 'InvalidParameterValue', /not an object-storage endpoint/],
    ['long description', { 'DiskImage.1.Description': 'd'.repeat(256) }, { Description: 'd'.repeat(256) }, 'InvalidParameterValue', /at most 255 characters/],
  ];
  const volumeParams = { 'Image.Format': 'VMDK', 'Image.Bytes': '1048576', 'Image.ImportManifestUrl': MANIFEST, 'Volume.Size': '2' };

  test.each(cases)('%s', async (_name, instanceExtra, volumeExtra, code, message) => {
    const instanceError = await importInstance.validate(params({ ...disk(), ...instanceExtra }), ctx).catch((e) => e);
    const volumeError = await importVolume.validate(params({ ...volumeParams, ...volumeExtra }), ctx).catch((e) => e);
    expect(instanceError).toMatchObject({ code, message: expect.stringMatching(message) });
    expect(volumeError).toMatchObject({ code, message: expect.stringMatching(message) });
    // Same words, but each names the parameter its client sent.
    expect(instanceError.message.replace(/DiskImage\.1\./g, '')).toBe(volumeError.message);
  });
});

describe('launch specification checks', () => {
  const LS = 'LaunchSpecification';
  const cases: [Record<string, string>, string, RegExp][] = [
    [{ [`${LS}.Architecture`]: 'sparc' }, 'InvalidParameterValue', /Architecture.*i386, x86_64, arm64/],
    [{ [`${LS}.InstanceType`]: 'big one' }, 'InvalidParameterValue', /InstanceType.*such as m5\.large/],
    [{ [`${LS}.SubnetId`]: 'net-1' }, 'InvalidParameterValue', /SubnetId.*subnet-1a2b3c4d/],
    [{ [`${LS}.GroupId.1`]: 'web' }, 'InvalidParameterValue', /GroupId\.1.*sg-1a2b3c4d/],
    [{ [`${LS}.GroupName.1`]: 'g'.repeat(256) }, 'InvalidParameterValue', /GroupName\.1/],
    [{ [`${LS}.PrivateIpAddress`]: '10.0.0.300', [`${LS}.SubnetId`]: 'subnet-1a2b3c4d' }, 'InvalidParameterValue', /IPv4 address/],
    [{ [`${LS}.PrivateIpAddress`]: '10.0.0.3' }, 'MissingParameter', /SubnetId/],
    [{ [`${LS}.Monitoring`]: 'yes' }, 'InvalidParameterValue', /Monitoring.*true or false/],
    [{ [`${LS}.InstanceInitiatedShutdownBehavior`]: 'hibernate' }, 'InvalidParameterValue', /stop, terminate/],
    [{ [`${LS}.UserData.Data`]: 'A'.repeat(21849) }, 'InvalidParameterValue', /16 KiB/],
    [{ Description: 'x'.repeat(256) }, 'InvalidParameterValue', /parameter Description is invalid.*255/],
  ];
  test.each(cases)('%j → %s', async (extra, code, message) => {
    await expect(importInstance.validate(params({ ...disk(), ...extra }), ctx)).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
  });

  test('the newest instance families and a metal size are accepted', async () => {
    for (const type of ['m7i-flex.large', 'u-6tb1.metal', 'mac2-m2pro.metal', 't2.micro']) {
      expect((await importInstance.validate(params({ ...disk(), [`${LS}.InstanceType`]: type }), ctx)).instance.instanceType).toBe(type);
    }
  });
});

test('DryRun validates and creates nothing', async () => {
  await expect(call({ ...disk(), DryRun: 'true' })).rejects.toMatchObject({ code: 'DryRunOperation' });
  await expect(call({ ...disk(1), ...disk(2), DryRun: 'true' })).rejects.toMatchObject({ code: 'DryRunOperation' });
  await expect(call({ ...disk(1), ...disk(2, { 'DiskImage.2.Image.Format': 'ISO' }), DryRun: 'true' })).rejects.toMatchObject({ code: 'InvalidParameterValue' });
  expect(await store.list({ accountId: '555555555555' })).toEqual([]);
  expect(events).toEqual([]);
});

test('Describe renders importInstance with the volume id, checksum and extension elements once converted', async () => {
  const out = await call({ ...disk(1, { 'DiskImage.1.Description': 'root' }), Description: 'inst' });
  const id = out.conversionTask.conversionTaskId;
  await updateTask(store, id, (doc) => ({
    ...doc,
    state: 'completed',
    statusMessage: '',
    progress: 100,
    bytesConverted: 2 * 1024 ** 3,
    artifacts: { image: { bucket: 'imgs', key: `images/${id}/disk.raw`, size: 2 * 1024 ** 3, sha256: 'cd'.repeat(32) }, volumeId: 'vol-0123456789abcdef0' },
  }));
  const described = await describeConversionTasks.validate(params({ 'ConversionTaskId.1': id }), ctx);
  const [item] = ((await describeConversionTasks.run(described, ctx)) as any).conversionTasks;
  expect(item).toEqual(conversionTaskXml(described.tasks[0]));
  expect(item.state).toBe('completed');
  expect(item.importInstance).toEqual({
    description: 'inst',
    instanceId: out.conversionTask.importInstance.instanceId,
    platform: undefined,
    volumes: [
      {
        availabilityZone: 'us-west-2a',
        bytesConverted: 2 * 1024 ** 3,
        description: 'root',
        image: { format: 'VMDK', size: 1048576, importManifestUrl: MANIFEST, checksum: 'cd'.repeat(32) },
        volume: { size: 2, id: 'vol-0123456789abcdef0' },
        imageLocation: `s3://imgs/images/${id}/disk.raw`,
        imageSha256: 'cd'.repeat(32),
        progress: 100,
        status: 'completed',
        statusMessage: '',
      },
    ],
  });
});

test('CancelConversionTask cancels a pending import-instance task', async () => {
  const out = await call(disk());
  const id = out.conversionTask.conversionTaskId;
  await runAction('CancelConversionTask', params({ ConversionTaskId: id, ReasonMessage: 'wrong disk' }), ctx);
  expect((await store.get(id))!).toMatchObject({ state: 'cancelled', statusMessage: 'wrong disk' });
});

describe('extension parameters KernelId, RamdiskId, VirtualizationType, Layout', () => {
  const image = (id: string, imageType?: 'kernel' | 'ramdisk', accountId = '555555555555') =>
    store.putResource({ id, kind: 'image', accountId, taskId: 'bundle-reg-00000000000000000', name: id, architecture: 'x86_64', rootDeviceName: '/dev/sda1', snapshotIds: [], sizeGiB: 1, createdAt: new Date().toISOString(), ...(imageType ? { imageType } : {}), state: 'available' });

  test('kept on the boot disk\'s task only; checked as RegisterImage checks them, nothing stored when refused', async () => {
    await image('eki-00000000000000001', 'kernel');
    await image('eri-00000000000000002', 'ramdisk');
    await image('emi-00000000000000003');
    await image('eki-00000000000000004', 'kernel', '666666666666');
    const out = await call({ ...disk(1), ...disk(2), KernelId: 'eki-00000000000000001', RamdiskId: 'eri-00000000000000002', VirtualizationType: 'paravirtual', Layout: 'partition' });
    const boot = (await store.get(out.conversionTask.conversionTaskId))!;
    expect([boot.request.kernelId, boot.request.ramdiskId, boot.request.virtualizationType, boot.request.layout]).toEqual(['eki-00000000000000001', 'eri-00000000000000002', 'paravirtual', 'partition']);
    const further = (await store.get(boot.request.instance!.volumeTaskIds![0]))!;
    expect([further.request.kernelId, further.request.layout]).toEqual([undefined, undefined]);

    const before = (await store.list({})).length;
    await expect(call({ ...disk(1), KernelId: 'emi-00000000000000003' })).rejects.toMatchObject({ code: 'InvalidParameterValue', message: expect.stringContaining('KernelId emi-00000000000000003 is a machine image, not a kernel image') });
    await expect(call({ ...disk(1), KernelId: 'eki-00000000000000001', RamdiskId: 'eki-00000000000000001' })).rejects.toMatchObject({ code: 'InvalidParameterValue' });
    await expect(call({ ...disk(1), KernelId: 'eki-00000000000000004' })).rejects.toMatchObject({ code: 'InvalidAMIID.NotFound' });
    await expect(call({ ...disk(1), RamdiskId: 'eri-00000000000000002' })).rejects.toMatchObject({ code: 'InvalidParameterCombination' });
    await expect(call({ ...disk(1), Layout: 'lvm' })).rejects.toMatchObject({ code: 'InvalidParameterValue' });
    await expect(call({ ...disk(1), VirtualizationType: 'pv' })).rejects.toMatchObject({ code: 'InvalidParameterValue' });
    expect((await store.list({})).length).toBe(before);
  });
});
