/** The store-backed account directory: what takes effect at once and what is remembered for a while. */
import { createAccount, StoreAccountDirectory } from '../../../gateway/accounts';
import { SqliteTaskStore } from '../../../tasks/sqlite-store';

let store: SqliteTaskStore;
let clock: number;
beforeEach(() => {
  store = SqliteTaskStore.open(':memory:');
  clock = 1_000_000;
});
afterEach(() => store.close());

const directory = () => new StoreAccountDirectory(store, { accountCheckMs: 10_000, now: () => clock });

test('a known key gives its account and secret; an unknown key nothing', async () => {
  const alice = await createAccount(store, 'alice');
  const accounts = directory();
  await expect(accounts.lookup(alice.accessKeyId)).resolves.toEqual({ accountId: alice.accountId, secretAccessKey: alice.secretAccessKey });
  await expect(accounts.lookup('AKIA0000000000000000')).resolves.toBeUndefined();
});

test('a deleted key, a changed secret and a deleted account take effect on the next lookup', async () => {
  const alice = await createAccount(store, 'alice');
  const accounts = directory();
  await accounts.lookup(alice.accessKeyId);
  const key = (await store.getKey(alice.accessKeyId))!;
  await store.deleteKey(key.accessKeyId);
  await store.createKey({ ...key, secretAccessKey: 'a-rotated-secret' });
  await expect(accounts.lookup(alice.accessKeyId)).resolves.toEqual({ accountId: alice.accountId, secretAccessKey: 'a-rotated-secret' });
  await store.deleteKey(alice.accessKeyId);
  await expect(accounts.lookup(alice.accessKeyId)).resolves.toBeUndefined();

  const bob = await createAccount(store, 'bob');
  await expect(accounts.lookup(bob.accessKeyId)).resolves.toBeDefined();
  await store.deleteAccount(bob.accountId);
  await expect(accounts.lookup(bob.accessKeyId)).resolves.toBeUndefined();
});

test('a key whose account is gone (a half-finished delete) signs nothing; a recent check of the account is trusted for accountCheckMs', async () => {
  const carol = await createAccount(store, 'carol');
  const key = (await store.getKey(carol.accessKeyId))!;
  // Never seen: the account is read, and its absence refuses the key.
  await store.deleteAccount(carol.accountId);
  await store.createKey(key);
  await expect(directory().lookup(key.accessKeyId)).resolves.toBeUndefined();

  const dave = await createAccount(store, 'dave');
  const accounts = directory();
  await expect(accounts.lookup(dave.accessKeyId)).resolves.toBeDefined();
  const daveKey = (await store.getKey(dave.accessKeyId))!;
  await store.deleteAccount(dave.accountId);
  await store.createKey(daveKey);
  clock += 9_999;
  await expect(accounts.lookup(dave.accessKeyId)).resolves.toBeDefined();
  clock += 1;
  await expect(accounts.lookup(dave.accessKeyId)).resolves.toBeUndefined();
});
