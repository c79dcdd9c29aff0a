import type { ResourceRecord, TaskDocument, TaskKind } from './task';

export interface TaskQuery {
  accountId: string;
  ids?: string[];
  kinds?: TaskKind[];
}

/**
 * Persistence of task documents and resource records. Two implementations share one contract
 * test suite: embedded SQLite (imaging serve) and MongoDB (distributed runs).
 */
export interface TaskStore {
  /** Inserts a new task; rejects with TaskExistsError when the id is taken. */
  create(task: TaskDocument): Promise<void>;
  get(id: string): Promise<TaskDocument | undefined>;
  /** Tasks of one account, newest first. */
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
  putResource(resource: ResourceRecord): Promise<void>;
  getResource(id: string): Promise<ResourceRecord | undefined>;
  close(): Promise<void>;
}

export class TaskExistsError extends Error {
  constructor(id: string) {
    super(`task ${id} already exists`);
    this.name = 'TaskExistsError';
  }
}
