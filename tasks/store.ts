import type { AccessKeyRecord, AccountRecord } from './accounts';
import type { ResourceKind, ResourceRecord, TaskDocument, TaskKind } from './task';

export interface TaskQuery {
  /** Tasks of this account; leave out only for an administrator's view of every account. */
  accountId?: string;
  ids?: string[];
  kinds?: readonly TaskKind[];
}

export interface ResourceQuery {
  /** Resources of this account; leave out only for an administrator's view of every account. */
  accountId?: string;
  kind: ResourceKind;
  ids?: string[];
}

/** The task a ClientToken was first used for, and the fingerprint of that request's parameters. */
export interface ClientTokenClaim {
  taskId: string;
  fingerprint: string;
}

/**
 * Persistence of task documents, resource records and the accounts that own them. Two
 * implementations share one contract test suite: embedded SQLite (imaging serve) and MongoDB
 * (distributed runs).
 */
export interface TaskStore {
  /** Inserts a new task; rejects with TaskExistsError when the id is taken. */
  create(task: TaskDocument): Promise<void>;
  get(id: string): Promise<TaskDocument | undefined>;
  /** Tasks of one account (or all, without accountId), newest first. */
  list(query: TaskQuery): Promise<TaskDocument[]>;
  /** Non-terminal tasks whose expiresAt is before `now` (all accounts), for the expiry sweep. */
  listExpired(now: Date): Promise<TaskDocument[]>;
  /** Tasks not yet ended (all accounts), oldest first, at most `limit`: what the sweeper looks at. */
  listUnfinished(limit: number): Promise<TaskDocument[]>;
  /**
   * Replaces the document when its stored version equals `expectedVersion`; the stored
   * version becomes expectedVersion + 1. Returns false (and writes nothing) otherwise.
   */
  compareAndSet(next: TaskDocument, expectedVersion: number): Promise<boolean>;
  /** How many tasks are in each state (all accounts; states with none are absent), for metrics. */
  countByState(): Promise<Record<string, number>>;
  putResource(resource: ResourceRecord): Promise<void>;
  getResource(id: string): Promise<ResourceRecord | undefined>;
  /** Resources of one kind, of one account (or all), oldest first. */
  listResources(query: ResourceQuery): Promise<ResourceRecord[]>;
  /** Removes a resource record; false when there was none. */
  deleteResource(id: string): Promise<boolean>;

  /**
   * Records that `token` of `accountId` names `claim.taskId`, unless the token was used before:
   * then resolves to the earlier claim and records nothing.
   */
  claimClientToken(accountId: string, token: string, claim: ClientTokenClaim): Promise<ClientTokenClaim | undefined>;

  /** Rejects with AccountConflictError when the id or the name is taken. */
  createAccount(account: AccountRecord): Promise<void>;
  getAccount(accountId: string): Promise<AccountRecord | undefined>;
  findAccountByName(name: string): Promise<AccountRecord | undefined>;
  listAccounts(): Promise<AccountRecord[]>;
  /** Removes the account and every key of it; false when there was no such account. */
  deleteAccount(accountId: string): Promise<boolean>;
  /** Rejects with AccountConflictError when the access key id is taken. */
  createKey(key: AccessKeyRecord): Promise<void>;
  getKey(accessKeyId: string): Promise<AccessKeyRecord | undefined>;
  listKeys(accountId: string): Promise<AccessKeyRecord[]>;
  deleteKey(accessKeyId: string): Promise<boolean>;

  close(): Promise<void>;
}

export class TaskExistsError extends Error {
  constructor(id: string) {
    super(`task ${id} already exists`);
    this.name = 'TaskExistsError';
  }
}
