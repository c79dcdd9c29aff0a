import { mkdirSync } from 'fs';
import { dirname } from 'path';
import Database from 'better-sqlite3';
import type { ResourceRecord, TaskDocument } from './task';
import { TERMINAL_STATES } from './task';
import type { TaskQuery, TaskStore } from './store';
import { TaskExistsError } from './store';

/**
 * Task store for `imaging serve` on one machine: an embedded SQLite database. The whole document
 * is kept as JSON; the columns beside it exist only to filter and sort without parsing JSON.
 * Times are stored as epoch milliseconds so ordering never depends on how an ISO string was written.
 */
export class SqliteTaskStore implements TaskStore {
  private readonly statements;

  private constructor(private readonly db: Database.Database) {
    const terminal = TERMINAL_STATES.map(() => '?').join(', ');
    this.statements = {
      insertTask: db.prepare(
        `INSERT INTO tasks (id, account_id, kind, state, created_at, expires_at, version, doc)
         VALUES (@id, @accountId, @kind, @state, @createdAt, @expiresAt, @version, @doc)`,
      ),
      getTask: db.prepare('SELECT doc FROM tasks WHERE id = ?'),
      listExpired: db.prepare(
        `SELECT doc FROM tasks WHERE expires_at < ? AND state NOT IN (${terminal}) ORDER BY expires_at`,
      ),
      listUnfinished: db.prepare(`SELECT doc FROM tasks WHERE state NOT IN (${terminal}) ORDER BY created_at LIMIT ?`),
      compareAndSet: db.prepare(
        `UPDATE tasks SET account_id = @accountId, kind = @kind, state = @state, created_at = @createdAt,
           expires_at = @expiresAt, version = @version, doc = @doc
         WHERE id = @id AND version = @expectedVersion`,
      ),
      putResource: db.prepare('INSERT OR REPLACE INTO resources (id, account_id, doc) VALUES (?, ?, ?)'),
      getResource: db.prepare('SELECT doc FROM resources WHERE id = ?'),
    };
  }

  static open(path: string | ':memory:'): SqliteTaskStore {
    // `imaging serve` points at data/tasks.db on a fresh machine; the directory may not exist yet.
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const db = new Database(path);
    // WAL lets readers (the gateway) proceed while a stage writes; the busy timeout covers two
    // processes sharing one file, where a writer may briefly hold the lock.
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    db.exec(`
      CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS tasks_account_created ON tasks (account_id, created_at);
      CREATE INDEX IF NOT EXISTS tasks_expires ON tasks (expires_at);
      CREATE INDEX IF NOT EXISTS tasks_state_created ON tasks (state, created_at);
      CREATE TABLE IF NOT EXISTS resources (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        doc TEXT NOT NULL
      );
    `);
    return new SqliteTaskStore(db);
  }

  async create(task: TaskDocument): Promise<void> {
    try {
      this.statements.insertTask.run(rowOf(task));
    } catch (err) {
      if (isPrimaryKeyViolation(err)) throw new TaskExistsError(task.id);
      throw err;
    }
  }

  async get(id: string): Promise<TaskDocument | undefined> {
    const row = this.statements.getTask.get(id) as { doc: string } | undefined;
    return row ? (JSON.parse(row.doc) as TaskDocument) : undefined;
  }

  async list(query: TaskQuery): Promise<TaskDocument[]> {
    const where = ['account_id = ?'];
    const params: unknown[] = [query.accountId];
    if (query.ids) {
      if (query.ids.length === 0) return [];
      where.push(`id IN (${query.ids.map(() => '?').join(', ')})`);
      params.push(...query.ids);
    }
    if (query.kinds) {
      if (query.kinds.length === 0) return [];
      where.push(`kind IN (${query.kinds.map(() => '?').join(', ')})`);
      params.push(...query.kinds);
    }
    const rows = this.db
      .prepare(`SELECT doc FROM tasks WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC`)
      .all(...params) as { doc: string }[];
    return rows.map((r) => JSON.parse(r.doc) as TaskDocument);
  }

  async listExpired(now: Date): Promise<TaskDocument[]> {
    const rows = this.statements.listExpired.all(now.getTime(), ...TERMINAL_STATES) as { doc: string }[];
    return rows.map((r) => JSON.parse(r.doc) as TaskDocument);
  }

  async listUnfinished(limit: number): Promise<TaskDocument[]> {
    const rows = this.statements.listUnfinished.all(...TERMINAL_STATES, limit) as { doc: string }[];
    return rows.map((r) => JSON.parse(r.doc) as TaskDocument);
  }

  async compareAndSet(next: TaskDocument, expectedVersion: number): Promise<boolean> {
    const written: TaskDocument = { ...next, version: expectedVersion + 1 };
    const result = this.statements.compareAndSet.run({ ...rowOf(written), expectedVersion });
    return result.changes === 1;
  }

  async putResource(resource: ResourceRecord): Promise<void> {
    this.statements.putResource.run(resource.id, resource.accountId, JSON.stringify(resource));
  }

  async getResource(id: string): Promise<ResourceRecord | undefined> {
    const row = this.statements.getResource.get(id) as { doc: string } | undefined;
    return row ? (JSON.parse(row.doc) as ResourceRecord) : undefined;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

function rowOf(task: TaskDocument) {
  return {
    id: task.id,
    accountId: task.accountId,
    kind: task.kind,
    state: task.state,
    createdAt: epochMs(task.createdAt, 'createdAt', task.id),
    expiresAt: epochMs(task.expiresAt, 'expiresAt', task.id),
    version: task.version,
    doc: JSON.stringify(task),
  };
}

function epochMs(iso: string, field: string, id: string): number {
  const ms = Date.parse(iso);
  // A NaN would be stored as NULL and silently drop the task out of sorting and expiry.
  if (Number.isNaN(ms)) throw new Error(`task ${id}: ${field} is not a valid time: ${JSON.stringify(iso)}`);
  return ms;
}

function isPrimaryKeyViolation(err: unknown): boolean {
  return (err as { code?: string })?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}
