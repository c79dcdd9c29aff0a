/**
 * Issue 16 (limits) and issue 11 (item 3): import tasks pending or active per account are capped
 * (IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT). Over the cap every import action answers
 * ResourceLimitExceeded; the cap holds when one account sends many imports at once, and one
 * account at its cap does not hold back another importing at the same time.
 */
import { CreateBucketCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { CancelConversionTaskCommand, ImportVolumeCommand } from '@aws-sdk/client-ec2';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { RunningService } from '../../cli/serve';
import { createAccount, type NewAccount } from '../../gateway/accounts';
import { makeS3Client } from '../../toolkit/io/object-storage';
import { tempDir } from '../helpers/disk-corpus';
import { boto3Calls, sdkClient, type Ec2Credentials } from '../helpers/ec2-clients';
import { startTestService, waitForTask, type Endpoints } from './import-driver';

const CAP = 3;

let service: RunningService;
let endpoints: Endpoints;
let alice: NewAccount;
let bob: NewAccount;

const credsOf = (account: NewAccount): Ec2Credentials => ({ accessKeyId: account.accessKeyId, secretAccessKey: account.secretAccessKey });

beforeAll(async () => {
  const dir = tempDir('task-cap-');
  ({ service, endpoints } = await startTestService(dir, { maxOpenTasksPerAccount: String(CAP) }));
  alice = await createAccount(service.tasks, 'alice');
  bob = await createAccount(service.tasks, 'bob');
  for (const [account, bucket] of [[alice, 'alice-bucket'], [bob, 'bob-bucket']] as const) {
    const s3 = makeS3Client({ endpoint: service.s3Endpoint, region: 'us-east-1', forcePathStyle: true, ...credsOf(account) });
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    s3.destroy();
  }
}, 60_000);

afterAll(async () => {
  // Tasks still waiting for an upload are cancelled first: nothing is left waiting when the service stops.
  for (const account of [alice, bob].filter(Boolean)) {
    const ec2 = sdkClient(endpoints.ec2, credsOf(account));
    for (const task of await service.tasks.list({ accountId: account.accountId })) {
      if (task.state === 'pending-upload') await ec2.send(new CancelConversionTaskCommand({ ConversionTaskId: task.id })).catch(() => undefined);
    }
    ec2.destroy();
  }
  await service?.stop();
}, 120_000);

/** A manifest URL whose object never arrives: the task waits for its upload (pending) until cancelled. */
async function neverUploaded(account: NewAccount, bucket: string, n: number): Promise<string> {
  const s3 = makeS3Client({ endpoint: service.s3Endpoint, region: 'us-east-1', forcePathStyle: true, ...credsOf(account) });
  const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: `never/${n}/manifest.xml` }), { expiresIn: 3600 });
  s3.destroy();
  return url;
}

async function importVolumes(account: NewAccount, bucket: string, count: number) {
  const ec2 = sdkClient(endpoints.ec2, credsOf(account));
  const urls = await Promise.all(Array.from({ length: count }, (_, i) => neverUploaded(account, bucket, i)));
  // All at once: the cap must hold against concurrent calls, not only one after another.
  const outcomes = await Promise.allSettled(urls.map((url) =>
    ec2.send(new ImportVolumeCommand({ Image: { Format: 'RAW', Bytes: 1024 ** 2, ImportManifestUrl: url }, Volume: { Size: 1 }, AvailabilityZone: 'local-1a' }))));
  ec2.destroy();
  return outcomes;
}

test('two accounts importing at once: alice gets exactly the cap, bob is not held back by her', async () => {
  const [aliceOutcomes, bobOutcomes] = await Promise.all([importVolumes(alice, 'alice-bucket', CAP + 3), importVolumes(bob, 'bob-bucket', CAP - 1)]);
  const accepted = aliceOutcomes.filter((o) => o.status === 'fulfilled');
  const refused = aliceOutcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason] : []));
  expect(accepted).toHaveLength(CAP);
  expect(refused).toHaveLength(3);
  for (const err of refused) {
    expect(err.name).toBe('ResourceLimitExceeded');
    expect(err.message).toMatch(new RegExp(`the most allowed at once \\(${CAP}, IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT\\)`));
  }
  expect(bobOutcomes.map((o) => o.status)).toEqual(Array(CAP - 1).fill('fulfilled'));
  const open = (await service.tasks.list({ accountId: alice.accountId })).filter((t) => t.state === 'pending-upload');
  expect(open).toHaveLength(CAP);
}, 120_000);

test('at the cap every import action answers ResourceLimitExceeded (boto3); bob, under it, is still accepted', async () => {
  const url = await neverUploaded(alice, 'alice-bucket', 99);
  const creds = credsOf(alice);
  const outcomes = await boto3Calls(endpoints.ec2, [
    { creds, operation: 'ImportVolume', params: { Image: { Format: 'RAW', Bytes: 1024 ** 2, ImportManifestUrl: url }, Volume: { Size: 1 }, AvailabilityZone: 'local-1a' } },
    { creds, operation: 'ImportInstance', params: { Platform: 'Windows', LaunchSpecification: { Architecture: 'x86_64', InstanceType: 'm5.large' }, DiskImages: [{ Image: { Format: 'RAW', Bytes: 1024 ** 2, ImportManifestUrl: url }, Volume: { Size: 1 } }] } },
    { creds, operation: 'ImportImage', params: { DiskContainers: [{ Format: 'RAW', UserBucket: { S3Bucket: 'alice-bucket', S3Key: 'disk.raw' } }] } },
    { creds, operation: 'ImportSnapshot', params: { DiskContainer: { Format: 'RAW', UserBucket: { S3Bucket: 'alice-bucket', S3Key: 'disk.raw' } } } },
  ]);
  for (const outcome of outcomes) expect(outcome.ok ? 'ok' : `${outcome.error.code}: ${outcome.error.message}`).toMatch(/^ResourceLimitExceeded: This account has 3 import tasks pending or active/);
  expect(outcomes.map((o) => (o.ok ? 0 : o.error.httpStatus))).toEqual(Array(4).fill(400));

  // Bob, under the cap, is still accepted (his import running to completion beside Alice's
  // waiting tasks is the in-process bus's concern: issue 11, item 3).
  const [bobs] = await boto3Calls(endpoints.ec2, [{ creds: credsOf(bob), operation: 'ImportVolume', params: { Image: { Format: 'RAW', Bytes: 1024 ** 2, ImportManifestUrl: await neverUploaded(bob, 'bob-bucket', 99) }, Volume: { Size: 1 }, AvailabilityZone: 'local-1a' } }]);
  expect(bobs.ok).toBe(true);
}, 180_000);

test('a cancelled task frees its place: the next import is accepted, the one after is refused again', async () => {
  const [open] = (await service.tasks.list({ accountId: alice.accountId })).filter((t) => t.state === 'pending-upload');
  const creds = credsOf(alice);
  const [cancel] = await boto3Calls(endpoints.ec2, [{ creds, operation: 'CancelConversionTask', params: { ConversionTaskId: open.id } }]);
  expect(cancel.ok).toBe(true);
  await waitForTask({ ...endpoints, creds }, open.id);
  const outcomes = await importVolumes(alice, 'alice-bucket', 2);
  expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
  expect(outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason.name] : []))).toEqual(['ResourceLimitExceeded']);
}, 60_000);
