/**
 * Work on a task is leased: the replica that claims it writes its holder id, an attempt number
 * (epoch) and an expiry into the task document with a compare-and-set, and renews it while it
 * works. Other replicas that get the same event meanwhile (JetStream redelivers when an ack wait
 * passes) see a live lease and step back. Outputs are written under the attempt's number and
 * committed only by the lease holder, so a stale attempt can never overwrite a newer one.
 */
import { randomBytes } from 'crypto';
import { hostname } from 'os';
import { isTerminal, updateTask } from '../tasks/state-machine';
import type { TaskStore } from '../tasks/store';
import type { TaskDocument, TaskState } from '../tasks/task';
import type { StageContext } from './stage';

/** This process, as a lease holder. */
export const REPLICA_ID = `${hostname()}/${process.pid}/${randomBytes(3).toString('hex')}`;

export interface Attempt {
  holder: string;
  epoch: number;
}

export type Claim =
  | { kind: 'claimed'; task: TaskDocument; attempt: Attempt }
  /** Another replica holds a live lease until `until` (epoch ms). */
  | { kind: 'busy'; until: number; holder: string }
  /** The task is gone, ended, or not in the expected state any more. */
  | { kind: 'not-here'; task?: TaskDocument };

export function leaseIsLive(doc: TaskDocument, now = Date.now()): boolean {
  return !!doc.lease && Date.parse(doc.lease.expiresAt) > now;
}

export function holdsLease(doc: TaskDocument, attempt: Attempt): boolean {
  return doc.lease?.holder === attempt.holder && doc.lease.epoch === attempt.epoch;
}

/** Claims the task for `stage` when it is in `expects` and nobody else holds a live lease. */
export async function claimTask(store: TaskStore, taskId: string, stage: string, expects: TaskState, leaseMs: number, holder = REPLICA_ID): Promise<Claim> {
  let outcome: Claim = { kind: 'not-here' };
  const stored = await updateTask(store, taskId, (doc) => {
    if (isTerminal(doc.state) || doc.state !== expects || doc.cancelRequested) {
      outcome = { kind: 'not-here', task: doc };
      return undefined;
    }
    // A live lease is respected even when this process holds it: a second delivery of the event
    // to another worker of the same process (concurrency, or replicas in one \`imaging serve\`)
    // is a duplicate too. A failed attempt releases its lease, so a retry here is not blocked.
    if (leaseIsLive(doc)) {
      outcome = { kind: 'busy', until: Date.parse(doc.lease!.expiresAt), holder: doc.lease!.holder };
      return undefined;
    }
    const epoch = (doc.lease?.epoch ?? 0) + 1;
    outcome = { kind: 'claimed', task: doc, attempt: { holder, epoch } };
    return { ...doc, lease: { holder, stage, epoch, expiresAt: new Date(Date.now() + leaseMs).toISOString() } };
  });
  if (!stored) return { kind: 'not-here' };
  const result = outcome as Claim; // assigned inside the update callback
  return result.kind === 'claimed' ? { ...result, task: stored } : result;
}

/** Extends the lease; false when it was lost (taken over after expiry, or the task ended). */
export async function renewLease(store: TaskStore, taskId: string, attempt: Attempt, leaseMs: number): Promise<boolean> {
  let held = false;
  await updateTask(store, taskId, (doc) => {
    held = holdsLease(doc, attempt) && !isTerminal(doc.state);
    if (!held) return undefined;
    return { ...doc, lease: { ...doc.lease!, expiresAt: new Date(Date.now() + leaseMs).toISOString() } };
  });
  return held;
}

/** Gives the lease up (the step failed and will be retried, maybe elsewhere). */
export async function releaseLease(store: TaskStore, taskId: string, attempt: Attempt): Promise<void> {
  await updateTask(store, taskId, (doc) => {
    if (!holdsLease(doc, attempt)) return undefined;
    return { ...doc, lease: { ...doc.lease!, expiresAt: new Date(0).toISOString() } };
  });
}

/**
 * Whether this attempt still holds the task (no lease at all: the only attempt there is). What
 * an attempt wrote outside the image store is its to remove only while it does: after a
 * take-over the same keys are the newer attempt's.
 */
export async function stillHolds(ctx: StageContext, taskId: string): Promise<boolean> {
  if (ctx.signal?.aborted) return false;
  if (!ctx.attempt) return true;
  const doc = await ctx.tasks.get(taskId);
  return !!doc && holdsLease(doc, ctx.attempt);
}
