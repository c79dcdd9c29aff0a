/** Who owns an access key: the gateway's only view of identity. */
export interface AccountDirectory {
  lookup(accessKeyId: string): Promise<{ accountId: string; secretAccessKey: string } | undefined>;
}

export interface AccountCredentials {
  accountId: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** A fixed set of keys, from configuration or a test. */
export class StaticAccountDirectory implements AccountDirectory {
  private readonly byKey = new Map<string, { accountId: string; secretAccessKey: string }>();

  constructor(accounts: AccountCredentials[]) {
    for (const { accountId, accessKeyId, secretAccessKey } of accounts) {
      if (this.byKey.has(accessKeyId)) throw new Error(`access key ${accessKeyId} is listed twice`);
      this.byKey.set(accessKeyId, { accountId, secretAccessKey });
    }
  }

  async lookup(accessKeyId: string) {
    return this.byKey.get(accessKeyId);
  }
}
