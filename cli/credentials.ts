/**
 * Where the `imaging` client commands get credentials, like other EC2 tools: flags, then the
 * standard AWS chain (environment, profile files, …), then the bootstrap credentials that
 * `imaging serve` keeps in its data directory (so a local user needs no setup).
 */
import { existsSync, readFileSync } from 'fs';
import { join } from 'path';
import { defaultProvider } from '@aws-sdk/credential-provider-node';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface BootstrapCredentials extends AwsCredentials {
  accountId: string;
}

export const CREDENTIALS_FILE = 'credentials.json';

export function readBootstrapCredentials(dataDir: string): BootstrapCredentials | undefined {
  const path = join(dataDir, CREDENTIALS_FILE);
  if (!existsSync(path)) return undefined;
  const parsed = JSON.parse(readFileSync(path, 'utf8'));
  if (typeof parsed.accessKeyId !== 'string' || typeof parsed.secretAccessKey !== 'string') return undefined;
  return parsed;
}

export async function resolveCredentials(options: { accessKeyId?: string; secretAccessKey?: string; profile?: string; dataDir?: string }): Promise<AwsCredentials> {
  if (options.accessKeyId && options.secretAccessKey) return { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey };
  try {
    const provider = defaultProvider(options.profile ? { profile: options.profile } : {});
    const found = await provider();
    return { accessKeyId: found.accessKeyId, secretAccessKey: found.secretAccessKey, sessionToken: found.sessionToken };
  } catch {
    const local = readBootstrapCredentials(options.dataDir ?? process.env.IMAGING_DATA_DIR ?? './data');
    if (local) return local;
    throw new Error('no credentials: pass --access-key-id and --secret-access-key, set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile, or run from the directory of `imaging serve` (its data/credentials.json)');
  }
}
