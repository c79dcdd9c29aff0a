/** Endpoints, region and credentials of the client commands, from flags, the environment, or the local defaults. */
import { S3Client } from '@aws-sdk/client-s3';
import { S3_COMPATIBLE_CHECKSUMS } from '../toolkit/io/object-storage';
import { Ec2Client } from './ec2-client';
import { resolveCredentials, type AwsCredentials } from './credentials';

export interface ClientFlags {
  endpoint?: string;
  s3Endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  profile?: string;
}

export interface ClientContext {
  ec2: Ec2Client;
  s3: S3Client;
  s3Endpoint: string;
  region: string;
  credentials: AwsCredentials;
}

const first = (...values: (string | undefined)[]) => values.find((v) => v !== undefined && v !== '');

export async function clientContext(flags: ClientFlags, env: NodeJS.ProcessEnv = process.env): Promise<ClientContext> {
  const endpoint = first(flags.endpoint, env.IMAGING_EC2_ENDPOINT, env.EC2_URL, env.AWS_ENDPOINT_URL_EC2) ?? 'http://127.0.0.1:8773/';
  const s3Endpoint = first(flags.s3Endpoint, env.IMAGING_S3_ENDPOINT, env.S3_URL, env.AWS_ENDPOINT_URL_S3) ?? 'http://127.0.0.1:8774/';
  const region = first(flags.region, env.AWS_REGION, env.AWS_DEFAULT_REGION) ?? 'us-east-1';
  const credentials = await resolveCredentials({ accessKeyId: flags.accessKeyId, secretAccessKey: flags.secretAccessKey, profile: flags.profile ?? env.AWS_PROFILE });
  return {
    ec2: new Ec2Client(endpoint, region, credentials),
    s3: new S3Client({ endpoint: s3Endpoint, region, forcePathStyle: true, credentials, ...S3_COMPATIBLE_CHECKSUMS }),
    s3Endpoint,
    region,
    credentials,
  };
}
