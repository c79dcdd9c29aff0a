import { MongoClient, MongoServerError } from 'mongodb';
import type { Collection, Db, Filter } from 'mongodb';
import type { ResourceRecord, TaskDocument } from './task';
import { TERMINAL_STATES } from './task';
import type { TaskQuery, TaskStore } from './store';
import { TaskExistsError } from './store';

type StoredTask = Omit<TaskDocument, 'id'> & { _id: string };
type StoredResource = Omit<ResourceRecord, 'id'> & { _id: string };

const DUPLICATE_KEY = 11000;

/**
 * Task store for distributed runs: one MongoDB document per task, keyed by the task id.
 * Uses only operations that both MongoDB and the jongodb test server implement.
 * Times are ISO strings as written by `Date.toISOString()`, which sort and compare as text.
 */
export class MongoTaskStore implements TaskStore {
  private constructor(
    private readonly client: MongoClient,
    private readonly tasks: Collection<StoredTask>,
    private readonly resources: Collection<StoredResource>,
  ) {}

  static async connect(uri: string, dbName = 'imaging'): Promise<MongoTaskStore> {
    // Without ignoreUndefined the driver writes `undefined` fields as null, and a document
    // would not read back as it was written.
    const client = new MongoClient(uri, { ignoreUndefined: true });
    await client.connect();
    try {
      const db: Db = client.db(dbName);
      const tasks = db.collection<StoredTask>('tasks');
      await tasks.createIndex({ accountId: 1, createdAt: -1 });
      await tasks.createIndex({ expiresAt: 1 });
      await tasks.createIndex({ state: 1, createdAt: 1 });
      return new MongoTaskStore(client, tasks, db.collection<StoredResource>('resources'));
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
    const filter: Filter<StoredTask> = { accountId: query.accountId };
    if (query.ids) filter._id = { $in: query.ids };
    if (query.kinds) filter.kind = { $in: query.kinds };
    const found = await this.tasks.find(filter).sort({ createdAt: -1, _id: -1 }).toArray();
    return found.map(taskOf);
  }

  async listExpired(now: Date): Promise<TaskDocument[]> {
    const found = await this.tasks
      .find({ expiresAt: { $lt: now.toISOString() }, state: { $nin: [...TERMINAL_STATES] } })
      .sort({ expiresAt: 1 })
      .toArray();
    return found.map(taskOf);
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

function storedResourceOf(resource: ResourceRecord): StoredResource {
  const { id, ...rest } = resource;
  return { _id: id, ...rest };
}
