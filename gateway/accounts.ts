import type { TaskStore } from '../tasks/store';
import { ACCOUNT_NAME, AccountConflictError, newAccountId, newKeyFor, type AccountRecord } from '../tasks/accounts';

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

/**
 * The accounts and keys kept in the task store: what the gateway of a shared service uses.
 *
 * The key is read on every request, so a deleted key or a changed secret takes effect on the
 * next one (deleting an account deletes its keys with it). Whether the key's account still
 * exists is remembered for `accountCheckMs`: that check only catches a key left behind by a
 * half-finished account delete, and repeating it on every request was half of the lookup's cost.
 */
export class StoreAccountDirectory implements AccountDirectory {
  private readonly accountSeenAt = new Map<string, number>();
  private readonly accountCheckMs: number;
  private readonly now: () => number;

  constructor(
    private readonly store: Pick<TaskStore, 'getKey' | 'getAccount'>,
    options: { accountCheckMs?: number; now?: () => number } = {},
  ) {
    this.accountCheckMs = options.accountCheckMs ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  async lookup(accessKeyId: string) {
    const key = await this.store.getKey(accessKeyId);
    if (!key) return undefined;
    // A key whose account was deleted (a half-finished delete) signs nothing.
    if (!(await this.accountExists(key.accountId))) return undefined;
    return { accountId: key.accountId, secretAccessKey: key.secretAccessKey };
  }

  private async accountExists(accountId: string): Promise<boolean> {
    const now = this.now();
    const seen = this.accountSeenAt.get(accountId);
    if (seen !== undefined && now - seen < this.accountCheckMs) return true;
    if (!(await this.store.getAccount(accountId))) {
      this.accountSeenAt.delete(accountId);
      return false;
    }
    // Bounded: one entry per account that signed lately; emptied rather than grown past 10,000.
    if (this.accountSeenAt.size >= 10_000) this.accountSeenAt.clear();
    this.accountSeenAt.set(accountId, now);
    return true;
  }
}

/** Whether the account may see every account's tasks and resources (euca's `verbose`). */
export async function isAdminAccount(store: Pick<TaskStore, 'getAccount'>, accountId: string): Promise<boolean> {
  return (await store.getAccount(accountId))?.admin === true;
}

export interface NewAccount extends AccountCredentials {
  name: string;
  admin: boolean;
}

/** Creates an account with a fresh key pair; the name must be unused. */
export async function createAccount(store: TaskStore, name: string, options: { admin?: boolean; now?: Date } = {}): Promise<NewAccount> {
  if (!ACCOUNT_NAME.test(name)) throw new Error(`account name ${JSON.stringify(name)} is not valid: use 1 to 63 letters, digits, '.', '_', '@' or '-', starting with a letter or digit`);
  const now = options.now ?? new Date();
  for (let attempt = 0; ; attempt++) {
    const account: AccountRecord = { accountId: newAccountId(), name, admin: options.admin ?? false, createdAt: now.toISOString() };
    try {
      await store.createAccount(account);
    } catch (err) {
      if (err instanceof AccountConflictError && (await store.findAccountByName(name))) throw new AccountConflictError(`an account named ${name}`);
      if (err instanceof AccountConflictError && attempt < 3) continue; // the random id was taken
      throw err;
    }
    const key = newKeyFor(account.accountId, now);
    await store.createKey(key);
    return { accountId: account.accountId, name, admin: account.admin, accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey };
  }
}

/**
 * Makes sure the bootstrap account of `imaging serve` (an administrator) and its key are in the
 * store: the key pair of credentials.json or the settings keeps working across restarts.
 */
export async function ensureBootstrapAccount(store: TaskStore, credentials: AccountCredentials, name = 'admin'): Promise<void> {
  const now = new Date().toISOString();
  const existing = await store.getAccount(credentials.accountId);
  if (!existing) {
    const taken = await store.findAccountByName(name);
    await store.createAccount({ accountId: credentials.accountId, name: taken ? `${name}-${credentials.accountId}` : name, admin: true, createdAt: now });
  }
  const key = await store.getKey(credentials.accessKeyId);
  if (key && key.accountId !== credentials.accountId) {
    throw new Error(`access key ${credentials.accessKeyId} belongs to account ${key.accountId}, not to the bootstrap account ${credentials.accountId}`);
  }
  if (!key) await store.createKey({ ...credentials, createdAt: now });
  else if (key.secretAccessKey !== credentials.secretAccessKey) {
    // The operator changed the bootstrap secret (IMAGING_SECRET_ACCESS_KEY): the new one wins.
    await store.deleteKey(key.accessKeyId);
    await store.createKey({ ...credentials, createdAt: key.createdAt });
  }
}
