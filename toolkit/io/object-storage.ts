import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { trustingHttpsAgent } from './trusted-ca';
import { NodeHttpHandler } from '@smithy/node-http-handler';

/** How to reach S3-compatible object storage. */
export interface ObjectStorageConfig {
  endpoint: string; // e.g. http://127.0.0.1:8774
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Path-style addressing (http://host/bucket/key); s3rver and most self-hosted servers need it. */
  forcePathStyle: boolean;
  /** Longest wait for a TCP connection to be set up (default 5 s). */
  connectionTimeoutMs?: number;
  /** Longest a request's socket may stay silent, sending or receiving (default 60 s). */
  requestTimeoutMs?: number;
  /** Attempts per call, with the SDK's capped exponential backoff between them (default 5). */
  maxAttempts?: number;
}

export const DEFAULT_S3_CONNECTION_TIMEOUT_MS = 5_000;
export const DEFAULT_S3_REQUEST_TIMEOUT_MS = 60_000;
export const DEFAULT_S3_MAX_ATTEMPTS = 5;

/**
 * Checksums only where S3 requires them. By default the SDK sends streamed bodies with
 * aws-chunked encoding and trailing checksums, which many S3-compatible servers (s3rver among
 * them) store verbatim as the object's bytes.
 */
export const S3_COMPATIBLE_CHECKSUMS = {
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
} as const;

/** The HTTP status of an S3 SDK error, if it came from a response. */
export function s3StatusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** Whether an S3 SDK error says the object is not there (404, NotFound from a HEAD, NoSuchKey from a GET). */
export function isMissingObject(err: unknown): boolean {
  const name = (err as Error | undefined)?.name;
  return s3StatusOf(err) === 404 || name === 'NotFound' || name === 'NoSuchKey';
}

export function makeS3Client(config: ObjectStorageConfig): S3Client {
  // A private CA of an https endpoint (IMAGING_S3_CA_BUNDLE), when the process trusts one.
  const httpsAgent = trustingHttpsAgent({ keepAlive: true, maxSockets: 50 });
  return new S3Client({
    endpoint: config.endpoint,
    region: config.region,
    forcePathStyle: config.forcePathStyle,
    credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
    ...S3_COMPATIBLE_CHECKSUMS,
    // An endpoint that accepts and never answers must not pin a worker: every call times out,
    // is retried with backoff, then fails with the cause.
    requestHandler: new NodeHttpHandler({
      connectionTimeout: config.connectionTimeoutMs ?? DEFAULT_S3_CONNECTION_TIMEOUT_MS,
      // The socket's idle timeout (smithy's requestTimeout bounds a whole request and only warns
      // by default; a whole-request bound would also cut long part uploads that are progressing).
      socketTimeout: config.requestTimeoutMs ?? DEFAULT_S3_REQUEST_TIMEOUT_MS,
      ...(httpsAgent ? { httpsAgent } : {}),
    }),
    maxAttempts: config.maxAttempts ?? DEFAULT_S3_MAX_ATTEMPTS,
    retryMode: 'standard',
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
