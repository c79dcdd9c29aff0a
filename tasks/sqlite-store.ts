import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'fs';
import { dirname } from 'path';
import Database from 'better-sqlite3';
import type { ResourceRecord, TaskDocument } from './task';
import { TERMINAL_STATES } from './task';
import type { AccessKeyRecord, AccountRecord } from './accounts';
import { AccountConflictError } from './accounts';
import type { ClientTokenClaim, ResourceQuery, TaskQuery, TaskStore } from './store';
import { TaskExistsError } from './store';

/**
 * The conditions of a describe: `column = ?` for every value given in `equal`, `column IN (?, ...)`
 * for every list given in `among` (a column may carry SQLite's unary +: a filter the planner picks no index
 * for). Undefined when a list is empty: no row can match.
 */
function describeFilter(equal: Record<string, unknown>, among: Record<string, readonly unknown[] | undefined>): { where: string[]; params: unknown[] } | undefined {
  const where: string[] = [];
  const params: unknown[] = [];
  for (const [column, value] of Object.entries(equal)) {
    if (value === undefined) continue;
    where.push(`${column} = ?`);
    params.push(value);
  }
  for (const [column, values] of Object.entries(among)) {
    if (!values) continue;
    if (values.length === 0) return undefined;
    where.push(`${column} IN (${values.map(() => '?').join(', ')})`);
    params.push(...values);
  }
  return { where, params };
}

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
      countByState: db.prepare('SELECT state, COUNT(*) AS n FROM tasks GROUP BY state'),
      listExpired: db.prepare(
        `SELECT doc FROM tasks WHERE expires_at < ? AND state NOT IN (${terminal}) ORDER BY expires_at`,
      ),
      listUnfinished: db.prepare(`SELECT doc FROM tasks WHERE state NOT IN (${terminal}) ORDER BY created_at LIMIT ?`),
      compareAndSet: db.prepare(
        `UPDATE tasks SET account_id = @accountId, kind = @kind, state = @state, created_at = @createdAt,
           expires_at = @expiresAt, version = @version, doc = @doc
         WHERE id = @id AND version = @expectedVersion`,
      ),
      putResource: db.prepare('INSERT OR REPLACE INTO resources (id, account_id, kind, created_at, doc) VALUES (?, ?, ?, ?, ?)'),
      getResource: db.prepare('SELECT doc FROM resources WHERE id = ?'),
      deleteResource: db.prepare('DELETE FROM resources WHERE id = ?'),
      insertToken: db.prepare('INSERT OR IGNORE INTO client_tokens (account_id, token, task_id, fingerprint) VALUES (?, ?, ?, ?)'),
      getToken: db.prepare('SELECT task_id AS taskId, fingerprint FROM client_tokens WHERE account_id = ? AND token = ?'),
      insertAccount: db.prepare('INSERT INTO accounts (account_id, name, admin, created_at) VALUES (@accountId, @name, @admin, @createdAt)'),
      getAccount: db.prepare('SELECT account_id AS accountId, name, admin, created_at AS createdAt FROM accounts WHERE account_id = ?'),
      accountByName: db.prepare('SELECT account_id AS accountId, name, admin, created_at AS createdAt FROM accounts WHERE name = ?'),
      listAccounts: db.prepare('SELECT account_id AS accountId, name, admin, created_at AS createdAt FROM accounts ORDER BY created_at, name'),
      deleteAccount: db.prepare('DELETE FROM accounts WHERE account_id = ?'),
      deleteKeysOf: db.prepare('DELETE FROM access_keys WHERE account_id = ?'),
      insertKey: db.prepare('INSERT INTO access_keys (access_key_id, account_id, secret_access_key, created_at) VALUES (@accessKeyId, @accountId, @secretAccessKey, @createdAt)'),
      getKey: db.prepare('SELECT access_key_id AS accessKeyId, account_id AS accountId, secret_access_key AS secretAccessKey, created_at AS createdAt FROM access_keys WHERE access_key_id = ?'),
      listKeys: db.prepare('SELECT access_key_id AS accessKeyId, account_id AS accountId, secret_access_key AS secretAccessKey, created_at AS createdAt FROM access_keys WHERE account_id = ? ORDER BY created_at, access_key_id'),
      deleteKey: db.prepare('DELETE FROM access_keys WHERE access_key_id = ?'),
    };
  }

  static open(path: string | ':memory:'): SqliteTaskStore {
    // `imaging serve` points at data/tasks.db on a fresh machine; the directory may not exist yet.
    if (path !== ':memory:') createPrivately(path);
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
      CREATE INDEX IF NOT EXISTS tasks_account_kind_created ON tasks (account_id, kind, created_at, id);
      CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at, id);
      CREATE INDEX IF NOT EXISTS tasks_expires ON tasks (expires_at);
      CREATE INDEX IF NOT EXISTS tasks_state_created ON tasks (state, created_at);
      CREATE TABLE IF NOT EXISTS resources (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        doc TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS client_tokens (
        account_id TEXT NOT NULL,
        token TEXT NOT NULL,
        task_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        PRIMARY KEY (account_id, token)
      );
      CREATE TABLE IF NOT EXISTS accounts (
        account_id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        admin INTEGER NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS access_keys (
        access_key_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        secret_access_key TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS access_keys_account ON access_keys (account_id);
    `);
    // Databases made before resources had kind and creation-time columns get them here; rows
    // from then carry both in their JSON document.
    const columns = new Set((db.prepare('PRAGMA table_info(resources)').all() as { name: string }[]).map((c) => c.name));
    if (!columns.has('kind')) {
      db.exec(`ALTER TABLE resources ADD COLUMN kind TEXT NOT NULL DEFAULT '';
               ALTER TABLE resources ADD COLUMN created_at TEXT NOT NULL DEFAULT '';
               UPDATE resources SET kind = json_extract(doc, '$.kind'), created_at = json_extract(doc, '$.createdAt');`);
    }
    db.exec('CREATE INDEX IF NOT EXISTS resources_account_kind ON resources (account_id, kind, created_at); CREATE INDEX IF NOT EXISTS resources_kind ON resources (kind, created_at);');
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
    // Named tasks are found through the primary key, whatever else the query says. Left
    // indexable, account_id and kind draw SQLite (which has no statistics without ANALYZE) to the
    // account's index range, and 20 ids then cost a walk over every task of the account: the
    // unary + keeps those terms as filters on the rows the ids find (test/unit/tasks/sqlite-query-plans.test.ts).
    const filterOnly = (column: string) => (query.ids ? `+${column}` : column);
    const filter = describeFilter({ [filterOnly('account_id')]: query.accountId }, { id: query.ids, [filterOnly('kind')]: query.kinds });
    if (!filter) return [];
    const { where, params } = filter;
    if (query.before) {
      // A row value, which SQLite turns into one range of an index ending (created_at, id); the
      // same condition spelt with OR was a filter over the whole account range.
      where.push('(created_at, id) < (?, ?)');
      params.push(epochMs(query.before.createdAt, 'createdAt', query.before.id), query.before.id);
    }
    let limit = '';
    if (query.limit !== undefined) {
      limit = 'LIMIT ?';
      params.push(query.limit);
    }
    // Prepared statements are cached by their text: a describe names a handful of shapes.
    const rows = this.prepared(`SELECT doc FROM tasks ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC ${limit}`)
      .all(...params) as { doc: string }[];
    return rows.map((r) => JSON.parse(r.doc) as TaskDocument);
  }

  private readonly statementCache = new Map<string, Database.Statement>();

  private prepared(sql: string): Database.Statement {
    let statement = this.statementCache.get(sql);
    if (!statement) {
      // Bounded: the texts differ only in how many ids or kinds a query names.
      if (this.statementCache.size >= 256) this.statementCache.clear();
      statement = this.db.prepare(sql);
      this.statementCache.set(sql, statement);
    }
    return statement;
  }

  /**
   * How SQLite runs each listing prepared so far (EXPLAIN QUERY PLAN, one line per step): what a
   * test holds the indexes to, and what to look at when a describe slows down as the store grows.
   */
  preparedQueryPlans(): { sql: string; plan: string[] }[] {
    return [...this.statementCache.keys()].map((sql) => {
      // The plan does not depend on the values: every placeholder is bound to NULL.
      const placeholders = sql.split('?').length - 1;
      const steps = this.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...new Array(placeholders).fill(null)) as { detail: string }[];
      return { sql: sql.replace(/\s+/g, ' ').trim(), plan: steps.map((step) => step.detail) };
    });
  }

  async listExpired(now: Date): Promise<TaskDocument[]> {
    const rows = this.statements.listExpired.all(now.getTime(), ...TERMINAL_STATES) as { doc: string }[];
    return rows.map((r) => JSON.parse(r.doc) as TaskDocument);
  }

  async countByState(): Promise<Record<string, number>> {
    const rows = this.statements.countByState.all() as { state: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
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
    this.statements.putResource.run(resource.id, resource.accountId, resource.kind, resource.createdAt, JSON.stringify(resource));
  }

  async getResource(id: string): Promise<ResourceRecord | undefined> {
    const row = this.statements.getResource.get(id) as { doc: string } | undefined;
    return row ? (JSON.parse(row.doc) as ResourceRecord) : undefined;
  }

  async listResources(query: ResourceQuery): Promise<ResourceRecord[]> {
    const filter = describeFilter({ kind: query.kind, account_id: query.accountId }, { id: query.ids });
    if (!filter) return [];
    const { where, params } = filter;
    const rows = this.prepared(`SELECT doc FROM resources WHERE ${where.join(' AND ')} ORDER BY created_at, id`).all(...params) as { doc: string }[];
    return rows.map((r) => JSON.parse(r.doc) as ResourceRecord);
  }

  async deleteResource(id: string): Promise<boolean> {
    return this.statements.deleteResource.run(id).changes === 1;
  }

  async claimClientToken(accountId: string, token: string, claim: ClientTokenClaim): Promise<ClientTokenClaim | undefined> {
    const inserted = this.statements.insertToken.run(accountId, token, claim.taskId, claim.fingerprint).changes === 1;
    if (inserted) return undefined;
    return this.statements.getToken.get(accountId, token) as ClientTokenClaim;
  }

  async createAccount(account: AccountRecord): Promise<void> {
    try {
      this.statements.insertAccount.run({ ...account, admin: account.admin ? 1 : 0 });
    } catch (err) {
      if (isConstraintViolation(err)) throw new AccountConflictError(`an account with id ${account.accountId} or name ${account.name}`);
      throw err;
    }
  }

  async getAccount(accountId: string): Promise<AccountRecord | undefined> {
    return accountOf(this.statements.getAccount.get(accountId));
  }

  async findAccountByName(name: string): Promise<AccountRecord | undefined> {
    return accountOf(this.statements.accountByName.get(name));
  }

  async listAccounts(): Promise<AccountRecord[]> {
    return (this.statements.listAccounts.all() as unknown[]).map((row) => accountOf(row)!);
  }

  async deleteAccount(accountId: string): Promise<boolean> {
    return this.db.transaction(() => {
      this.statements.deleteKeysOf.run(accountId);
      return this.statements.deleteAccount.run(accountId).changes === 1;
    })();
  }

  async createKey(key: AccessKeyRecord): Promise<void> {
    try {
      this.statements.insertKey.run(key);
    } catch (err) {
      if (isConstraintViolation(err)) throw new AccountConflictError(`access key ${key.accessKeyId}`);
      throw err;
    }
  }

  async getKey(accessKeyId: string): Promise<AccessKeyRecord | undefined> {
    return (this.statements.getKey.get(accessKeyId) as AccessKeyRecord | undefined) ?? undefined;
  }

  async listKeys(accountId: string): Promise<AccessKeyRecord[]> {
    return this.statements.listKeys.all(accountId) as AccessKeyRecord[];
  }

  async deleteKey(accessKeyId: string): Promise<boolean> {
    return this.statements.deleteKey.run(accessKeyId).changes === 1;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

/**
 * Task documents carry presigned URLs, which are credentials while they last: the database is
 * created readable by its owner only (its directory too, when we create it). SQLite gives its
 * -wal and -shm files the mode of the database file, so they follow; a database left 0644 by an
 * older version is narrowed, with its -wal and -shm, when opened.
 */
function createPrivately(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, 'a', 0o600));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    if (existsSync(file)) chmodSync(file, 0o600);
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

function accountOf(row: unknown): AccountRecord | undefined {
  if (!row) return undefined;
  const r = row as AccountRecord & { admin: number | boolean };
  return { accountId: r.accountId, name: r.name, admin: Boolean(r.admin), createdAt: r.createdAt };
}

function isConstraintViolation(err: unknown): boolean {
  return /^SQLITE_CONSTRAINT/.test(String((err as { code?: string })?.code));
}

function isPrimaryKeyViolation(err: unknown): boolean {
  return (err as { code?: string })?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}
