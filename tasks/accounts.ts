/**
 * Accounts and their access keys, kept in the task store beside the tasks they own. An account
 * has a 12-digit id, a unique name, and one or more key pairs; an admin account may see every
 * account's tasks and resources (euca's `verbose`).
 */
import { randomBytes, randomInt } from 'crypto';

export interface AccountRecord {
  accountId: string; // 12 digits
  name: string;
  admin: boolean;
  createdAt: string;
}

export interface AccessKeyRecord {
  accessKeyId: string; // AKIA + 16 upper-case hex digits
  accountId: string;
  secretAccessKey: string;
  createdAt: string;
}

/** An account id, name or access key that is already taken. */
export class AccountConflictError extends Error {
  constructor(what: string) {
    super(`${what} already exists`);
    this.name = 'AccountConflictError';
  }
}

/** Account names: what an administrator types; kept to characters that need no quoting. */
export const ACCOUNT_NAME = /^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,62}$/;

export function newAccountId(): string {
  return String(randomInt(100000, 1000000)) + String(randomInt(100000, 1000000));
}

export function newAccessKeyId(): string {
  return `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;
}

export function newSecretAccessKey(): string {
  // 40 characters of base64 alphabet without the characters that need escaping in shells and URLs.
  let out = '';
  while (out.length < 40) out += randomBytes(45).toString('base64').replace(/[+/=]/g, '');
  return out.slice(0, 40);
}

export function newKeyFor(accountId: string, now = new Date()): AccessKeyRecord {
  return { accessKeyId: newAccessKeyId(), accountId, secretAccessKey: newSecretAccessKey(), createdAt: now.toISOString() };
}
