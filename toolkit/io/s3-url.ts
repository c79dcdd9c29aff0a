/** An object location written as `s3://bucket/key`. */
export interface S3Location {
  bucket: string;
  key: string;
}

export function isS3Url(text: string): boolean {
  return text.startsWith('s3://');
}

export function parseS3Url(text: string): S3Location {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(text);
  if (!match) throw new Error(`not an S3 URL (expected s3://bucket/key): ${text}`);
  const [, bucket, key] = match;
  if (!/^[a-z0-9][a-z0-9.\-_]{1,254}$/i.test(bucket)) throw new Error(`invalid bucket name in ${text}`);
  return { bucket, key };
}

export function formatS3Url(location: S3Location): string {
  return `s3://${location.bucket}/${location.key}`;
}
