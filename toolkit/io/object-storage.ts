import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { trustingHttpsAgent } from './trusted-ca';

/** How to reach S3-compatible object storage. */
export interface ObjectStorageConfig {
  endpoint: string; // e.g. http://127.0.0.1:8774
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Path-style addressing (http://host/bucket/key); s3rver and most self-hosted servers need it. */
  forcePathStyle: boolean;
}

/**
 * Checksums only where S3 requires them. By default the SDK sends streamed bodies with
 * aws-chunked encoding and trailing checksums, which many S3-compatible servers (s3rver among
 * them) store verbatim as the object's bytes.
 */
export const S3_COMPATIBLE_CHECKSUMS = {
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
} as const;

export function makeS3Client(config: ObjectStorageConfig): S3Client {
  // A private CA of an https endpoint (IMAGING_S3_CA_BUNDLE), when the process trusts one.
  const httpsAgent = trustingHttpsAgent({ keepAlive: true, maxSockets: 50 });
  return new S3Client({
    ...(httpsAgent ? { requestHandler: { httpsAgent } } : {}),
    endpoint: config.endpoint,
    region: config.region,
    forcePathStyle: config.forcePathStyle,
    credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
    ...S3_COMPATIBLE_CHECKSUMS,
  });
}

const ensuredBuckets = new WeakMap<S3Client, Set<string>>();

/** Creates a bucket unless it exists; safe when others create it at the same time. Remembered per client. */
export async function ensureBucket(s3: S3Client, bucket: string): Promise<void> {
  const known = ensuredBuckets.get(s3) ?? new Set<string>();
  ensuredBuckets.set(s3, known);
  if (known.has(bucket)) return;
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch {
    await s3.send(new CreateBucketCommand({ Bucket: bucket })).catch((err) => {
      if (!/BucketAlreadyOwnedByYou|BucketAlreadyExists/.test(String(err?.name ?? err))) throw err;
    });
  }
  known.add(bucket);
}
