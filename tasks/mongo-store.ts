import { MongoClient, MongoServerError } from 'mongodb';
import type { Collection, Db, Filter } from 'mongodb';
import type { ResourceRecord, TaskDocument } from './task';
import { TERMINAL_STATES } from './task';
import type { ClientTokenClaim, ResourceQuery, TaskQuery, TaskStore } from './store';
import { TaskExistsError } from './store';
import type { AccessKeyRecord, AccountRecord } from './accounts';
import { AccountConflictError } from './accounts';

type StoredTask = Omit<TaskDocument, 'id'> & { _id: string };
type StoredResource = Omit<ResourceRecord, 'id'> & { _id: string };
type StoredToken = ClientTokenClaim & { _id: string };
type StoredAccount = Omit<AccountRecord, 'accountId'> & { _id: string };
type StoredKey = Omit<AccessKeyRecord, 'accessKeyId'> & { _id: string };

interface Collections {
  tasks: Collection<StoredTask>;
  resources: Collection<StoredResource>;
  tokens: Collection<StoredToken>;
  accounts: Collection<StoredAccount>;
  keys: Collection<StoredKey>;
}

const DUPLICATE_KEY = 11000;

/**
 * Task store for distributed runs: one MongoDB document per task, keyed by the task id.
 * Uses only operations that both MongoDB and the jongodb test server implement.
 * Times are ISO strings as written by `Date.toISOString()`, which sort and compare as text.
 */
/** How long an operation waits for a reachable server before it fails. */
const SERVER_SELECTION_TIMEOUT_MS = 5000;

export class MongoTaskStore implements TaskStore {
  private readonly tasks: Collection<StoredTask>;
  private readonly resources: Collection<StoredResource>;
  private readonly tokens: Collection<StoredToken>;
  private readonly accounts: Collection<StoredAccount>;
  private readonly keys: Collection<StoredKey>;

  private constructor(
    private readonly client: MongoClient,
    collections: Collections,
  ) {
    ({ tasks: this.tasks, resources: this.resources, tokens: this.tokens, accounts: this.accounts, keys: this.keys } = collections);
  }

  static async connect(uri: string, dbName = 'imaging'): Promise<MongoTaskStore> {
    // Without ignoreUndefined the driver writes `undefined` fields as null, and a document
    // would not read back as it was written.
    // A call during an outage fails in seconds (and is retried by the caller) instead of
    // hanging for the driver's default 30 s server selection.
    const client = new MongoClient(uri, { ignoreUndefined: true, serverSelectionTimeoutMS: SERVER_SELECTION_TIMEOUT_MS });
    await client.connect();
    try {
      const db: Db = client.db(dbName);
      const tasks = db.collection<StoredTask>('tasks');
      await tasks.createIndex({ accountId: 1, createdAt: -1 });
      await tasks.createIndex({ accountId: 1, kind: 1, createdAt: -1, _id: -1 });
      await tasks.createIndex({ expiresAt: 1 });
      await tasks.createIndex({ createdAt: -1 });
      await tasks.createIndex({ state: 1, createdAt: 1 });
      const resources = db.collection<StoredResource>('resources');
      await resources.createIndex({ accountId: 1, kind: 1, createdAt: 1 });
      await resources.createIndex({ kind: 1, createdAt: 1 });
      const accounts = db.collection<StoredAccount>('accounts');
      await accounts.createIndex({ name: 1 }, { unique: true });
      const keys = db.collection<StoredKey>('accessKeys');
      await keys.createIndex({ accountId: 1 });
      const tokens = db.collection<StoredToken>('clientTokens');
      return new MongoTaskStore(client, { tasks, resources, tokens, accounts, keys });
    } catch (err) {
      await client.close();
      throw err;
    }
  }

  async create(task: TaskDocument): Promise<void> {
    try {
      await this.tasks.insertOne(storedTaskOf(task));
    } catch (err) {
      if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) throw new TaskExistsError(task.id);
      throw err;
    }
  }

  async get(id: string): Promise<TaskDocument | undefined> {
    const stored = await this.tasks.findOne({ _id: id });
    return stored ? taskOf(stored) : undefined;
  }

  async list(query: TaskQuery): Promise<TaskDocument[]> {
    const filter: Filter<StoredTask> = {};
    if (query.accountId !== undefined) filter.accountId = query.accountId;
    if (query.ids) filter._id = { $in: query.ids };
    if (query.kinds) filter.kind = { $in: [...query.kinds] };
    if (query.before) {
      // (createdAt, _id) before the cursor's, written so that the index scan starts at the
      // cursor: the range on createdAt bounds the scan of the (accountId, kind, createdAt, _id)
      // index, and the $or only turns away the cursor's own instant's later ids. Spelt as
      // { $or: [{ createdAt < c }, { createdAt = c, _id < id }] } alone, it leaves the planner
      // a scan from the newest task of the account down to the cursor.
      const { createdAt, id } = query.before;
      filter.createdAt = { $lte: createdAt };
      filter.$or = [{ createdAt: { $lt: createdAt } }, { _id: { $lt: id } }];
    }
    let cursor = this.tasks.find(filter).sort({ createdAt: -1, _id: -1 });
    // Named tasks are read through _id, whatever else the query says: left to choose, the
    // planner may also try the account's index, whose range grows with the account's tasks.
    // The few found are then filtered by account and kind and sorted in memory.
    if (query.ids) cursor = cursor.hint({ _id: 1 });
    if (query.limit !== undefined) {
      if (query.limit <= 0) return [];
      cursor = cursor.limit(query.limit);
    }
    const found = await cursor.toArray();
    return found.map(taskOf);
  }

  async listExpired(now: Date): Promise<TaskDocument[]> {
    const found = await this.tasks
      .find({ expiresAt: { $lt: now.toISOString() }, state: { $nin: [...TERMINAL_STATES] } })
      .sort({ expiresAt: 1 })
      .toArray();
    return found.map(taskOf);
  }

  async countByState(): Promise<Record<string, number>> {
    const groups = await this.tasks.aggregate<{ _id: string; n: number }>([{ $group: { _id: '$state', n: { $sum: 1 } } }]).toArray();
    return Object.fromEntries(groups.map((g) => [g._id, g.n]));
  }

  async listUnfinished(limit: number): Promise<TaskDocument[]> {
    const found = await this.tasks.find({ state: { $nin: [...TERMINAL_STATES] } }).sort({ createdAt: 1 }).limit(limit).toArray();
    return found.map(taskOf);
  }

  async compareAndSet(next: TaskDocument, expectedVersion: number): Promise<boolean> {
    // A whole-document replacement (not $set) so that a field the caller removed, such as
    // cancelRequested, is removed from the stored document too. jongodb implements replaceOne
    // with a filter like MongoDB does (checked by the contract suite).
    const { _id, ...replacement } = storedTaskOf({ ...next, version: expectedVersion + 1 });
    const result = await this.tasks.replaceOne({ _id, version: expectedVersion }, replacement);
    return result.matchedCount === 1;
  }

  async putResource(resource: ResourceRecord): Promise<void> {
    const { _id, ...replacement } = storedResourceOf(resource);
    await this.resources.replaceOne({ _id }, replacement, { upsert: true });
  }

  async getResource(id: string): Promise<ResourceRecord | undefined> {
    const stored = await this.resources.findOne({ _id: id });
    if (!stored) return undefined;
    const { _id, ...rest } = stored;
    return { id: _id, ...rest } as ResourceRecord;
  }

  async listResources(query: ResourceQuery): Promise<ResourceRecord[]> {
    const filter: Filter<StoredResource> = { kind: query.kind };
    if (query.accountId !== undefined) filter.accountId = query.accountId;
    if (query.ids) filter._id = { $in: query.ids };
    const found = await this.resources.find(filter).sort({ createdAt: 1, _id: 1 }).toArray();
    return found.map(({ _id, ...rest }) => ({ id: _id, ...rest }) as ResourceRecord);
  }

  async deleteResource(id: string): Promise<boolean> {
    return (await this.resources.deleteOne({ _id: id })).deletedCount === 1;
  }

  async claimClientToken(accountId: string, token: string, claim: ClientTokenClaim): Promise<ClientTokenClaim | undefined> {
    // The account id and the token are joined with a character neither can hold at that place:
    // account ids are digits.
    const _id = `${accountId}:${token}`;
    try {
      await this.tokens.insertOne({ _id, taskId: claim.taskId, fingerprint: claim.fingerprint });
      return undefined;
    } catch (err) {
      if (!(err instanceof MongoServerError && err.code === DUPLICATE_KEY)) throw err;
    }
    const earlier = await this.tokens.findOne({ _id });
    if (!earlier) throw new Error(`client token ${token} of account ${accountId} was taken and then removed`);
    return { taskId: earlier.taskId, fingerprint: earlier.fingerprint };
  }

  async createAccount(account: AccountRecord): Promise<void> {
    const { accountId, ...rest } = account;
    try {
      await this.accounts.insertOne({ _id: accountId, ...rest });
    } catch (err) {
      if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) throw new AccountConflictError(`an account with id ${accountId} or name ${account.name}`);
      throw err;
    }
  }

  async getAccount(accountId: string): Promise<AccountRecord | undefined> {
    return accountOf(await this.accounts.findOne({ _id: accountId }));
  }

  async findAccountByName(name: string): Promise<AccountRecord | undefined> {
    return accountOf(await this.accounts.findOne({ name }));
  }

  async listAccounts(): Promise<AccountRecord[]> {
    const found = await this.accounts.find({}).sort({ createdAt: 1, name: 1 }).toArray();
    return found.map((a) => accountOf(a)!);
  }

  async deleteAccount(accountId: string): Promise<boolean> {
    // Keys first: an account without keys is harmless, a key without its account is refused
    // by the directory anyway.
    await this.keys.deleteMany({ accountId });
    return (await this.accounts.deleteOne({ _id: accountId })).deletedCount === 1;
  }

  async createKey(key: AccessKeyRecord): Promise<void> {
    const { accessKeyId, ...rest } = key;
    try {
      await this.keys.insertOne({ _id: accessKeyId, ...rest });
    } catch (err) {
      if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) throw new AccountConflictError(`access key ${accessKeyId}`);
      throw err;
    }
  }

  async getKey(accessKeyId: string): Promise<AccessKeyRecord | undefined> {
    const found = await this.keys.findOne({ _id: accessKeyId });
    return found ? keyOf(found) : undefined;
  }

  async listKeys(accountId: string): Promise<AccessKeyRecord[]> {
    const found = await this.keys.find({ accountId }).sort({ createdAt: 1, _id: 1 }).toArray();
    return found.map(keyOf);
  }

  async deleteKey(accessKeyId: string): Promise<boolean> {
    return (await this.keys.deleteOne({ _id: accessKeyId })).deletedCount === 1;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

function storedTaskOf(task: TaskDocument): StoredTask {
  const { id, ...rest } = task;
  return { _id: id, ...rest };
}

function taskOf(stored: StoredTask): TaskDocument {
  const { _id, ...rest } = stored;
  return { id: _id, ...rest } as TaskDocument;
}

function accountOf(stored: StoredAccount | null): AccountRecord | undefined {
  if (!stored) return undefined;
  return { accountId: stored._id, name: stored.name, admin: Boolean(stored.admin), createdAt: stored.createdAt };
}

function keyOf(stored: StoredKey): AccessKeyRecord {
  return { accessKeyId: stored._id, accountId: stored.accountId, secretAccessKey: stored.secretAccessKey, createdAt: stored.createdAt };
}

function storedResourceOf(resource: ResourceRecord): StoredResource {
  const { id, ...rest } = resource;
  return { _id: id, ...rest };
}
