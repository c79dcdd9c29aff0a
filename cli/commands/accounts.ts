/**
 * `imaging account create|list|delete` and `imaging key create|delete|list`: the administrator's
 * commands, run against the task store itself (the embedded SQLite database of a data directory,
 * or MongoDB), not through the EC2 API: EC2 has no action for accounts.
 */
import { join } from 'path';
import type { Command } from 'commander';
import type { TaskStore } from '../../tasks/store';

interface StoreFlags {
  dataDir?: string;
  mongodbUri?: string;
  mongodbDb?: string;
}

export function withStoreFlags(command: Command): Command {
  return command
    .option('--data-dir <dir>', 'data directory of `imaging serve` (its tasks.db) [env IMAGING_DATA_DIR; default ./data]')
    .option('--mongodb-uri <uri>', 'MongoDB task store instead of the data directory [env IMAGING_MONGODB_URI]')
    .option('--mongodb-db <name>', 'MongoDB database name [env IMAGING_MONGODB_DB; default imaging]');
}

export async function openAdminStore(flags: StoreFlags, env: NodeJS.ProcessEnv = process.env): Promise<TaskStore> {
  const { openTaskStore } = await import('../../tasks/open-store');
  const mongodbUri = flags.mongodbUri || env.IMAGING_MONGODB_URI;
  const dataDir = flags.dataDir || env.IMAGING_DATA_DIR || './data';
  return openTaskStore(mongodbUri || `sqlite:${join(dataDir, 'tasks.db')}`, { mongoDbName: flags.mongodbDb || env.IMAGING_MONGODB_DB || undefined });
}

/** An account named by its 12-digit id or by its name. */
export async function findAccount(store: TaskStore, nameOrId: string) {
  const account = /^\d{12}$/.test(nameOrId) ? await store.getAccount(nameOrId) : undefined;
  const found = account ?? (await store.findAccountByName(nameOrId));
  if (!found) throw new Error(`no account ${nameOrId}`);
  return found;
}

export async function withStore<T>(flags: StoreFlags, work: (store: TaskStore) => Promise<T>): Promise<T> {
  const store = await openAdminStore(flags);
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

const print = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);

export function registerAccountCommands(program: Command, fail: (err: unknown) => never): void {
  const account = program.command('account').description('manage accounts (administrator; works on the task store directly)');

  withStoreFlags(account.command('create <name>').description('create an account with one key pair'))
    .option('--admin', 'the account may see every account (verbose describes)')
    .option('--json', 'print accountId, accessKeyId and secretAccessKey as JSON')
    .action(async (name: string, opts) => {
      try {
        const { createAccount } = await import('../../gateway/accounts');
        const created = await withStore(opts, (store) => createAccount(store, name, { admin: Boolean(opts.admin) }));
        print(
          opts.json
            ? JSON.stringify(created, null, 2)
            : [`account:        ${created.accountId} (${created.name}${created.admin ? ', admin' : ''})`, `access key id:  ${created.accessKeyId}`, `secret key:     ${created.secretAccessKey}`].join('\n'),
        );
      } catch (err) {
        fail(err);
      }
    });

  withStoreFlags(account.command('list').description('list accounts'))
    .option('--json', 'print JSON')
    .action(async (opts) => {
      try {
        const accounts = await withStore(opts, (store) => store.listAccounts());
        if (opts.json) print(JSON.stringify(accounts, null, 2));
        else if (accounts.length) print(accounts.map((a) => `${a.accountId}\t${a.name}${a.admin ? '\tadmin' : ''}`).join('\n'));
      } catch (err) {
        fail(err);
      }
    });

  withStoreFlags(account.command('delete <account>').description('delete an account (by name or id) and all its keys'))
    .action(async (nameOrId: string, opts) => {
      try {
        const deleted = await withStore(opts, async (store) => {
          const found = await findAccount(store, nameOrId);
          await store.deleteAccount(found.accountId);
          return found;
        });
        print(`${deleted.accountId}\t${deleted.name}\tdeleted`);
      } catch (err) {
        fail(err);
      }
    });

  const key = program.command('key').description("manage an account's access keys (administrator)");

  withStoreFlags(key.command('create <account>').description('create another key pair for an account (by name or id)'))
    .option('--json', 'print JSON')
    .action(async (nameOrId: string, opts) => {
      try {
        const { newKeyFor } = await import('../../tasks/accounts');
        const created = await withStore(opts, async (store) => {
          const found = await findAccount(store, nameOrId);
          const made = newKeyFor(found.accountId);
          await store.createKey(made);
          return made;
        });
        const { createdAt, ...shown } = created;
        print(opts.json ? JSON.stringify(shown, null, 2) : [`access key id:  ${created.accessKeyId}`, `secret key:     ${created.secretAccessKey}`].join('\n'));
      } catch (err) {
        fail(err);
      }
    });

  withStoreFlags(key.command('delete <accessKeyId>').description('delete an access key'))
    .action(async (accessKeyId: string, opts) => {
      try {
        const deleted = await withStore(opts, (store) => store.deleteKey(accessKeyId));
        if (!deleted) throw new Error(`no access key ${accessKeyId}`);
        print(`${accessKeyId}\tdeleted`);
      } catch (err) {
        fail(err);
      }
    });

  withStoreFlags(key.command('list <account>').description("list an account's access key ids (secrets are shown only when created)"))
    .option('--json', 'print JSON')
    .action(async (nameOrId: string, opts) => {
      try {
        const keys = await withStore(opts, async (store) => store.listKeys((await findAccount(store, nameOrId)).accountId));
        const shown = keys.map(({ accessKeyId, accountId, createdAt }) => ({ accessKeyId, accountId, createdAt }));
        if (opts.json) print(JSON.stringify(shown, null, 2));
        else if (shown.length) print(shown.map((k) => `${k.accessKeyId}\t${k.createdAt}`).join('\n'));
      } catch (err) {
        fail(err);
      }
    });
}
