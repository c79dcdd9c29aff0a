import type { TaskStore } from './store';
import { MongoTaskStore } from './mongo-store';
import { SqliteTaskStore } from './sqlite-store';

export interface OpenTaskStoreOptions {
  /** Database for a MongoDB url; defaults to the database named in the url, else 'imaging'. */
  mongoDbName?: string;
}

/**
 * Opens the task store a url names: `mongodb://…` / `mongodb+srv://…` → MongoDB,
 * `sqlite:PATH` (also `sqlite://PATH`, `sqlite::memory:`) or a plain file path → embedded SQLite.
 */
export async function openTaskStore(url: string, options: OpenTaskStoreOptions = {}): Promise<TaskStore> {
  if (/^mongodb(\+srv)?:\/\//i.test(url)) {
    return MongoTaskStore.connect(url, options.mongoDbName ?? mongoDatabaseNamedIn(url) ?? 'imaging');
  }
  if (/^sqlite:/i.test(url)) {
    const path = url.slice('sqlite:'.length).replace(/^\/\//, '');
    if (!path) throw new Error(`task store url ${url} names no file`);
    return SqliteTaskStore.open(path);
  }
  // Anything else with a scheme is a typo or an engine we do not have; refuse rather than
  // create a SQLite file named "postgres://…".
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) throw new Error(`unsupported task store url: ${url}`);
  if (!url) throw new Error('task store url is empty');
  return SqliteTaskStore.open(url);
}

/** The path segment of a MongoDB connection string: mongodb://user:pw@h1,h2/DB?opts. */
export function mongoDatabaseNamedIn(url: string): string | undefined {
  const afterScheme = url.replace(/^mongodb(\+srv)?:\/\//i, '');
  // Hosts follow the credentials; start after the last '@' so a password cannot look like a path.
  const hosts = afterScheme.slice(afterScheme.lastIndexOf('@') + 1);
  const slash = hosts.indexOf('/');
  if (slash < 0) return undefined;
  const name = decodeURIComponent(hosts.slice(slash + 1).split('?')[0]);
  return name || undefined;
}
