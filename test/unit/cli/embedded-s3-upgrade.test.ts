/**
 * A store from before the service had a key of its own: `imaging serve`'s bootstrap key was the
 * service's, so buckets its user made were recorded as the service's. Restarted with the
 * bootstrap account named as their owner, that account reaches them again; the image store
 * stays the service's.
 */
import { mkdtempSync, mkdirSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { CreateBucketCommand, ListBucketsCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { makeS3Client } from '../../../toolkit/io/object-storage';
import { startEmbeddedS3 } from '../../../cli/embedded-s3';

const OLD_SERVICE = { accessKeyId: 'AKIDBOOTSTRAP', secretAccessKey: 'bootstrap-secret' };
const NEW_SERVICE = { accessKeyId: 'AKISSERVICE', secretAccessKey: 'service-secret' };
const ADMIN = { accountId: '123456789012', ...OLD_SERVICE };
const IMAGES = 'imaging-images';

test('buckets the old service key made become the bootstrap account\'s; the image store does not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'embedded-s3-upgrade-'));
  const store = join(dir, 's3');
  const client = (endpoint: string, key: { accessKeyId: string; secretAccessKey: string }) =>
    makeS3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, ...key });
  try {
    const before = await startEmbeddedS3({ host: '127.0.0.1', port: 0, directory: store, serviceKeys: [OLD_SERVICE], imageBucket: IMAGES });
    const old = client(before.endpoint, OLD_SERVICE);
    await old.send(new CreateBucketCommand({ Bucket: IMAGES }));
    await old.send(new CreateBucketCommand({ Bucket: 'my-uploads' }));
    await old.send(new PutObjectCommand({ Bucket: 'my-uploads', Key: 'disk.part.0', Body: 'mine' }));
    old.destroy();
    await before.stop();
    mkdirSync(join(store, 'from-before-records'));

    const after = await startEmbeddedS3({
      host: '127.0.0.1', port: 0, directory: store, serviceKeys: [NEW_SERVICE], imageBucket: IMAGES,
      lookupKey: (id) => (id === ADMIN.accessKeyId ? ADMIN : undefined), formerServiceBucketsOwner: ADMIN.accountId,
    });
    const admin = client(after.endpoint, ADMIN);
    try {
      const listed = await admin.send(new ListObjectsV2Command({ Bucket: 'my-uploads' }));
      expect(listed.Contents!.map((o) => o.Key)).toEqual(['disk.part.0']);
      expect((await admin.send(new ListBucketsCommand({}))).Buckets!.map((b) => b.Name).sort()).toEqual(['from-before-records', 'my-uploads']);
      await expect(admin.send(new ListObjectsV2Command({ Bucket: IMAGES }))).rejects.toMatchObject({ name: 'AccessDenied' });
    } finally {
      admin.destroy();
      await after.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
