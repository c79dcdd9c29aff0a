/**
 * BundleInstance through `imaging serve` with moto_server as its object storage (so multipart
 * uploads can be listed and "nothing left behind" is checked, not assumed). An instance imported
 * by ImportInstance (a bootable system disk, RAW) is bundled through boto3 into the caller's
 * bucket, followed through @aws-sdk/client-ec2 and boto3's BundleTaskComplete waiter, and its
 * bundle registered with RegisterImage: the registered image's bytes are the instance's root
 * volume's, which are the disk's as `qemu-img convert -O raw` reads it. A cancel mid-way leaves
 * no part, manifest or upload in the bucket; another account finds none of it; bad requests get
 * their EC2 error codes; and the CLI's bundle-instance / describe-bundle-tasks do the same.
 */
import { createHmac, randomBytes } from 'crypto';
import { statSync } from 'fs';
import { join } from 'path';
import { BundleInstanceCommand, CancelBundleTaskCommand, DescribeBundleTasksCommand, DescribeImagesCommand } from '@aws-sdk/client-ec2';
import { CopyObjectCommand, CreateBucketCommand, GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { RunningService } from '../../cli/serve';
import { createAccount } from '../../gateway/accounts';
import type { ImageRecord, InstanceRecord, TaskDocument, VolumeRecord } from '../../tasks/task';
import { qemuToRaw, seededBytes, tempDir } from '../helpers/disk-corpus';
import { boto3Call, boto3Calls, boto3Wait, sdkClient, type Ec2Credentials } from '../helpers/ec2-clients';
import { debianTree, makeDisk, UUIDS } from '../helpers/guest-images';
import { describeWithMoto, startMotoServer, type RunningMotoServer } from '../helpers/moto-server';
import { objectBytes, runCli, sha256, startTestService, upload, waitForTask, type Endpoints } from './import-driver';

jest.setTimeout(180_000);

const MiB = 1024 ** 2;
const BUCKET = 'bundle-out';
const IMAGE_BUCKET = 'imaging-images';

describeWithMoto('BundleInstance of an imported instance (serve on moto_server)', () => {
  let moto: RunningMotoServer;
  let service: RunningService;
  let endpoints: Endpoints;
  let dir: string;
  let instanceId: string;
  /** The instance's root volume bytes, as the image store holds them. */
  let rootVolume: Buffer;
  /** `qemu-img convert -O raw` of the imported disk. */
  let reference: Buffer;

  beforeAll(async () => {
    dir = tempDir('e2e-bundle-instance-');
    // A small system disk the validate stage accepts as an instance's root: MBR with boot code, a Debian-shaped ext4.
    const path = makeDisk({ dir, path: (name) => join(dir, name), cleanup: () => undefined }, 'disk', {
      table: 'mbr',
      biosBootCode: true,
      partitions: [{ sizeMiB: 12, bootable: true, fs: { kind: 'ext4', uuid: UUIDS.debianRoot, tree: { ...debianTree(), 'var/lib/random.bin': seededBytes(3 * MiB + 333, 5) } } }],
    });
    const disk = { path, size: statSync(path).size };
    reference = qemuToRaw(disk.path, join(dir, 'reference.raw'), 'raw');
    moto = await startMotoServer();
    ({ service, endpoints } = await startTestService(dir, { s3Endpoint: moto.endpoint, s3AccessKeyId: 'MOTO', s3SecretAccessKey: 'MOTO' }));
    await moto.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const up = await upload(endpoints, disk.path, 'import-src');
    const created = await boto3Call(endpoints.ec2, endpoints.creds, 'ImportInstance', {
      LaunchSpecification: { Architecture: 'x86_64' },
      DiskImages: [{ Image: { Format: 'RAW', Bytes: disk.size, ImportManifestUrl: up.manifestUrl }, Volume: { Size: up.volumeSizeGiB } }],
    });
    const imported = await waitForTask(endpoints, created.ConversionTask.ConversionTaskId, 150_000);
    expect(imported.State).toBe('completed');
    instanceId = created.ConversionTask.ImportInstance.InstanceId;
    const instance = (await service.tasks.getResource(instanceId)) as InstanceRecord;
    const volume = (await service.tasks.getResource(instance.volumeIds[0])) as VolumeRecord;
    rootVolume = await objectBytes(service.s3, volume.image.bucket, volume.image.key);
  }, 240_000);

  afterAll(async () => {
    await service?.stop();
    await moto?.stop();
  });

  const objectsUnder = async (prefix: string) => ((await moto.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!).sort();
  const uploadsUnder = async (prefix: string) => ((await moto.s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: prefix }))).Uploads ?? []).map((u) => u.Key);

  /** DescribeBundleTasks (@aws-sdk/client-ec2: in-process, so polling is cheap) until the task is complete or failed. */
  async function waitForBundle(bundleId: string): Promise<any> {
    const sdk = sdkClient(endpoints.ec2, endpoints.creds);
    try {
      const deadline = Date.now() + 150_000;
      for (;;) {
        const [task] = (await sdk.send(new DescribeBundleTasksCommand({ BundleIds: [bundleId] }))).BundleTasks!;
        if (task.State === 'complete' || task.State === 'failed') return task;
        if (Date.now() > deadline) throw new Error(`bundle ${bundleId} still ${task.State}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      sdk.destroy();
    }
  }

  /** RegisterImage through boto3, then DescribeImages (@aws-sdk/client-ec2) until the image is no longer pending. */
  async function registerAndWait(location: string, name: string, creds: Ec2Credentials = endpoints.creds): Promise<any> {
    const { ImageId } = await boto3Call(endpoints.ec2, creds, 'RegisterImage', { ImageLocation: location, Name: name });
    const sdk = sdkClient(endpoints.ec2, creds);
    try {
      const deadline = Date.now() + 150_000;
      for (;;) {
        const image = (await sdk.send(new DescribeImagesCommand({ ImageIds: [ImageId] }))).Images![0];
        if (image.State !== 'pending') return image;
        if (Date.now() > deadline) throw new Error(`${ImageId} still pending`);
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      sdk.destroy();
    }
  }

  test('boto3 BundleInstance, then RegisterImage of the bundle: the image holds the root volume\'s bytes', async () => {
    expect(rootVolume.length).toBe(reference.length);
    expect(sha256(rootVolume)).toBe(sha256(reference));
    // An upload policy signed with the caller's own key, as EC2 clients send one.
    const policy = Buffer.from(JSON.stringify({ expiration: '2099-01-01T00:00:00Z', conditions: [{ bucket: BUCKET }, ['starts-with', '$key', 'bundles/inst']] }));
    const signature = createHmac('sha1', endpoints.creds.secretAccessKey).update(policy.toString('base64')).digest('base64');
    const started = (await boto3Call(endpoints.ec2, endpoints.creds, 'BundleInstance', {
      InstanceId: instanceId,
      Storage: { S3: { Bucket: BUCKET, Prefix: 'bundles/inst', AWSAccessKeyId: endpoints.creds.accessKeyId, UploadPolicy: policy.toString('utf8'), UploadPolicySignature: signature } },
    })).BundleTask;
    expect(started).toMatchObject({ InstanceId: instanceId, BundleId: expect.stringMatching(/^bun-[0-9a-f]{8}$/), State: expect.stringMatching(/^(pending|bundling|storing|complete)$/), Storage: { S3: { Bucket: BUCKET, Prefix: 'bundles/inst', AWSAccessKeyId: endpoints.creds.accessKeyId } } });

    // @aws-sdk/client-ec2 sees the task while it runs; the states it passes through are EC2's.
    const sdk = sdkClient(endpoints.ec2, endpoints.creds);
    const seen = new Set<string>();
    try {
      for (let i = 0; i < 600; i++) {
        const { BundleTasks } = await sdk.send(new DescribeBundleTasksCommand({ BundleIds: [started.BundleId] }));
        seen.add(`${BundleTasks![0].State}`);
        if (BundleTasks![0].State === 'complete' || BundleTasks![0].State === 'failed') {
          expect(BundleTasks![0]).toMatchObject({ State: 'complete', Progress: '100%', InstanceId: instanceId });
          expect(BundleTasks![0].StartTime).toBeInstanceOf(Date);
          // The policy comes back as it was given (a blob: base64 on the wire).
          expect(Buffer.from(BundleTasks![0].Storage!.S3!.UploadPolicy!).toString('utf8')).toBe(policy.toString('utf8'));
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      sdk.destroy();
    }
    expect([...seen].every((s) => ['pending', 'bundling', 'storing', 'complete'].includes(s))).toBe(true);
    expect(seen.has('complete')).toBe(true);
    // boto3's waiter agrees, and the filters of the model find the task.
    await boto3Wait(endpoints.ec2, endpoints.creds, 'bundle_task_complete', { BundleIds: [started.BundleId] });
    const filtered = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeBundleTasks', { Filters: [{ Name: 'bundle-state', Values: ['complete'] }, { Name: 'instance-id', Values: [instanceId] }, { Name: 's3-prefix', Values: ['bundles/*'] }] });
    expect(filtered.BundleTasks.map((t: any) => t.BundleId)).toContain(started.BundleId);

    // The bundle: parts, then the manifest; no upload left open.
    const files = await objectsUnder('bundles/');
    expect(files).toContain('bundles/inst.manifest.xml');
    expect(files.filter((k) => /^bundles\/inst\.part\.\d+$/.test(k)).length).toBe(files.length - 1);
    expect(await uploadsUnder('bundles/')).toEqual([]);
    const manifest = (await objectBytes(moto.s3, BUCKET, 'bundles/inst.manifest.xml')).toString('utf8');
    expect(manifest).toContain(`<user>${service.credentials.accountId}</user>`);

    const image = await registerAndWait(`${BUCKET}/bundles/inst.manifest.xml`, 'bundled-instance');
    expect(image).toMatchObject({ State: 'available', ImageType: 'machine', RootDeviceType: 'instance-store', Architecture: 'x86_64' });
    const record = (await service.tasks.getResource(image.ImageId)) as ImageRecord;
    const bytes = await objectBytes(service.s3, record.image!.bucket, record.image!.key);
    expect([bytes.length, sha256(bytes)]).toEqual([reference.length, sha256(reference)]);
    // Signed by the cloud key, for this account.
    const registration = (await service.tasks.get(record.taskId)) as TaskDocument;
    expect(registration.artifacts.bundle!.signedBy).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  test('another account finds neither the instance nor the bundle task, and cannot register a copy of the bundle', async () => {
    const stranger = await createAccount(service.tasks, 'bundle-stranger');
    const creds = { accessKeyId: stranger.accessKeyId, secretAccessKey: stranger.secretAccessKey };
    const mine = (await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeBundleTasks', {})).BundleTasks;
    expect(mine.length).toBeGreaterThan(0);
    const bundleId = mine[0].BundleId;
    const outcomes = await boto3Calls(endpoints.ec2, [
      { creds, operation: 'BundleInstance', params: { InstanceId: instanceId, Storage: { S3: { Bucket: BUCKET, Prefix: 'stolen' } } } },
      { creds, operation: 'DescribeBundleTasks', params: { BundleIds: [bundleId] } },
      { creds, operation: 'CancelBundleTask', params: { BundleId: bundleId } },
      { creds, operation: 'DescribeBundleTasks', params: {} },
    ]);
    expect(outcomes.map((o) => (o.ok ? o.response.BundleTasks : o.error.code))).toEqual(['InvalidInstanceID.NotFound', 'InvalidBundleID.NotFound', 'InvalidBundleID.NotFound', []]);
    expect((await service.tasks.get(bundleId))!.state).toBe('completed');

    // A copy of the cloud-signed bundle in the stranger's bucket: its <user> is not the stranger.
    const theirs = 'stranger-bucket';
    await moto.s3.send(new CreateBucketCommand({ Bucket: theirs }));
    for (const key of await objectsUnder('bundles/inst.')) {
      await moto.s3.send(new CopyObjectCommand({ Bucket: theirs, Key: key, CopySource: `${BUCKET}/${key}` }));
    }
    const image = await registerAndWait(`${theirs}/bundles/inst.manifest.xml`, 'copied-bundle', creds);
    expect(image.State).toBe('failed');
    expect(image.StateReason.Message).toMatch(/^ClientError: the bundle manifest was made by BundleInstance for another account/);
  });

  test('bad requests get their EC2 error codes, and nothing is started', async () => {
    const s3 = (extra: Record<string, unknown> = {}) => ({ S3: { Bucket: BUCKET, Prefix: 'bad', ...extra } });
    const cases: [string, Record<string, unknown>, string, string?][] = [
      ['BundleInstance', { InstanceId: 'i-0123456789abcdef0', Storage: s3() }, 'InvalidInstanceID.NotFound'],
      ['BundleInstance', { InstanceId: 'instance-1', Storage: s3() }, 'InvalidInstanceID.Malformed'],
      ['BundleInstance', { InstanceId: instanceId, Storage: { S3: { Prefix: 'bad' } } }, 'MissingParameter', 'Storage.S3.Bucket'],
      ['BundleInstance', { InstanceId: instanceId, Storage: { S3: { Bucket: 'no-such-bucket-here', Prefix: 'bad' } } }, 'InvalidParameterValue', 'does not exist'],
      ['BundleInstance', { InstanceId: instanceId, Storage: s3({ Prefix: 'dir/' }) }, 'InvalidParameterValue', 'Storage.S3.Prefix'],
      ['BundleInstance', { InstanceId: instanceId, Storage: s3({ AWSAccessKeyId: endpoints.creds.accessKeyId, UploadPolicy: '{}', UploadPolicySignature: 'bm90IGl0' }) }, 'InvalidParameterValue', 'UploadPolicySignature'],
      ['BundleInstance', { InstanceId: instanceId, Storage: s3({ AWSAccessKeyId: 'AKIANOTMINE000000000' }) }, 'InvalidParameterValue', 'AWSAccessKeyId'],
      ['BundleInstance', { InstanceId: instanceId, Storage: s3(), DryRun: true }, 'DryRunOperation'],
      ['DescribeBundleTasks', { BundleIds: ['bun-00000000'] }, 'InvalidBundleID.NotFound'],
      ['DescribeBundleTasks', { Filters: [{ Name: 'colour', Values: ['red'] }] }, 'InvalidParameterValue'],
      ['CancelBundleTask', { BundleId: 'bun-00000000' }, 'InvalidBundleID.NotFound'],
    ];
    const outcomes = await boto3Calls(endpoints.ec2, cases.map(([operation, params]) => ({ creds: endpoints.creds, operation, params })));
    const got = outcomes.map((o) => (o.ok ? ['ok'] : [o.error.code, o.error.message]));
    expect(got).toEqual(cases.map(([, , code, text]) => [code, text ? expect.stringContaining(text) : expect.any(String)]));
    expect(await objectsUnder('bad')).toEqual([]);
  });

  test('cancel mid-way: the task ends failed (Canceled) and no part, manifest or upload is left in the bucket', async () => {
    // An instance over incompressible bytes in the image store, so that bundling runs for seconds.
    const hex = randomBytes(8).toString('hex');
    const key = `images/seeded-${hex}/disk.raw`;
    const body = randomBytes(64 * MiB);
    await moto.s3.send(new PutObjectCommand({ Bucket: IMAGE_BUCKET, Key: key, Body: body }));
    const accountId = service.credentials.accountId;
    const createdAt = new Date().toISOString();
    await service.tasks.putResource({ id: `vol-0${hex}`, kind: 'volume', accountId, taskId: 'import-i-0000abcd', sizeGiB: 1, image: { bucket: IMAGE_BUCKET, key, size: body.length }, createdAt });
    await service.tasks.putResource({ id: `i-0${hex}`, kind: 'instance', accountId, taskId: 'import-i-0000abcd', state: 'stopped', volumeIds: [`vol-0${hex}`], architecture: 'x86_64', createdAt });

    const started = (await boto3Call(endpoints.ec2, endpoints.creds, 'BundleInstance', { InstanceId: `i-0${hex}`, Storage: { S3: { Bucket: BUCKET, Prefix: 'cancel/big' } } })).BundleTask;
    // In-process client from here on: a cancel sent through boto3 waits a second for python to start.
    const sdk = sdkClient(endpoints.ec2, endpoints.creds);
    try {
      // One bundle of an instance at a time.
      const again: any = await sdk.send(new BundleInstanceCommand({ InstanceId: `i-0${hex}`, Storage: { S3: { Bucket: BUCKET, Prefix: 'cancel/again' } } })).catch((e) => e);
      expect(again.name).toBe('BundlingInProgress');
      // Mid-way: a part is in the bucket.
      const deadline = Date.now() + 90_000;
      while ((await objectsUnder('cancel/')).length < 1) {
        const task = (await service.tasks.get(started.BundleId))!;
        if (task.state === 'completed' || task.state === 'failed' || Date.now() > deadline) throw new Error(`the bundle's parts were never seen (task ${task.state})`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const cancelling = (await sdk.send(new CancelBundleTaskCommand({ BundleId: started.BundleId }))).BundleTask;
      expect(cancelling).toMatchObject({ BundleId: started.BundleId, State: 'cancelling' });
    } finally {
      sdk.destroy();
    }
    const ended = await waitForBundle(started.BundleId);
    expect(ended).toMatchObject({ State: 'failed', BundleTaskError: { Code: 'Canceled', Message: 'Canceled by user' } });
    expect(await objectsUnder('cancel/')).toEqual([]);
    expect(await uploadsUnder('cancel/')).toEqual([]);
    await expect(boto3Call(endpoints.ec2, endpoints.creds, 'CancelBundleTask', { BundleId: started.BundleId })).rejects.toMatchObject({ code: 'IncorrectState' });
    const failed = await boto3Call(endpoints.ec2, endpoints.creds, 'DescribeBundleTasks', { Filters: [{ Name: 'error-code', Values: ['Canceled'] }] });
    expect(failed.BundleTasks.map((t: any) => t.BundleId)).toEqual([started.BundleId]);
  });

  test('imaging bundle-instance --wait --json and describe-bundle-tasks --json', async () => {
    const { stdout } = await runCli(endpoints, ['bundle-instance', instanceId, '--bucket', BUCKET, '--prefix', 'cli/inst', '--wait', '--json']);
    const task = JSON.parse(stdout);
    expect(task).toMatchObject({ instanceId, state: 'complete', progress: 100, manifestLocation: `${BUCKET}/cli/inst.manifest.xml`, bytesBundled: rootVolume.length });
    const described = JSON.parse((await runCli(endpoints, ['describe-bundle-tasks', task.bundleId, '--json'])).stdout);
    expect(described).toEqual([task]);
    const manifest = await moto.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'cli/inst.manifest.xml' }));
    expect(manifest.ContentLength).toBeGreaterThan(0);
    const { stdout: text } = await runCli(endpoints, ['describe-bundle-tasks', task.bundleId]);
    expect(text).toContain(`${task.bundleId}  complete  100%`);
  });
});
