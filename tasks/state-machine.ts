import type { TaskDocument, TaskState } from './task';
import { TERMINAL_STATES } from './task';
import type { TaskStore } from './store';
import { PIPELINE } from '../pipeline/table';

/**
 * Which step may follow which: each stage of the pipeline table moves a task from the state it
 * expects to the one it leaves it in. Cancelling/failing is allowed from any non-terminal state.
 */
const NEXT: ReadonlyMap<TaskState, readonly TaskState[]> = (() => {
  const next = new Map<TaskState, TaskState[]>([['cancelling', ['cancelled']]]);
  for (const row of PIPELINE) next.set(row.expects, [...(next.get(row.expects) ?? []), row.movesTo]);
  return next;
})();

/** The states a task may go to from `from` in the normal course of the pipeline. */
export function nextStates(from: TaskState): readonly TaskState[] {
  return NEXT.get(from) ?? [];
}

export class IllegalTransitionError extends Error {
  constructor(id: string, from: TaskState, to: TaskState) {
    super(`task ${id} cannot go from ${from} to ${to}`);
    this.name = 'IllegalTransitionError';
  }
}

export function isTerminal(state: TaskState): boolean {
  return TERMINAL_STATES.includes(state);
}

export function canTransition(from: TaskState, to: TaskState): boolean {
  if (isTerminal(from)) return false;
  if (to === 'failed' || to === 'cancelling' || to === 'cancelled') return from !== to;
  return nextStates(from).includes(to);
}

/** Returns the document moved to `to`, with history and status message; throws when illegal. */
export function transition(doc: TaskDocument, to: TaskState, statusMessage?: string, now = new Date()): TaskDocument {
  if (!canTransition(doc.state, to)) throw new IllegalTransitionError(doc.id, doc.state, to);
  const at = now.toISOString();
  return {
    ...doc,
    state: to,
    statusMessage: statusMessage ?? doc.statusMessage,
    progress: to === 'completed' ? 100 : doc.progress,
    updatedAt: at,
    history: [...doc.history, { at, from: doc.state, to, ...(statusMessage ? { message: statusMessage } : {}) }],
  };
}

/** The state an EC2 client sees for a conversion task. */
export function ec2ConversionState(doc: TaskDocument): 'active' | 'cancelling' | 'cancelled' | 'completed' {
  switch (doc.state) {
    case 'completed':
      return 'completed';
    case 'cancelled':
    case 'failed':
      return 'cancelled';
    case 'cancelling':
      return 'cancelling';
    default:
      return doc.cancelRequested ? 'cancelling' : 'active';
  }
}

/**
 * Read-modify-write with compare-and-set, retried on conflict. `mutate` returns the new
 * document, or undefined to leave the task as it is. Resolves to the stored document
 * (after the write, or unchanged), or undefined when the task does not exist.
 */
export async function updateTask(
  store: TaskStore,
  id: string,
  mutate: (doc: TaskDocument) => TaskDocument | undefined,
  maxAttempts = 20,
): Promise<TaskDocument | undefined> {
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const current = await store.get(id);
    if (!current) return undefined;
    const next = mutate(current);
    if (!next) return current;
    const written = { ...next, version: current.version + 1, updatedAt: next.updatedAt ?? current.updatedAt };
    if (await store.compareAndSet(written, current.version)) return written;
  }
  throw new Error(`task ${id}: too many concurrent updates`);
}

/** Moves a task from one of `from` to `to`; returns undefined when it was not in `from` (already done elsewhere). */
export async function advanceTask(
  store: TaskStore,
  id: string,
  from: TaskState[],
  to: TaskState,
  patch: (doc: TaskDocument) => Partial<TaskDocument> = () => ({}),
  statusMessage?: string,
  /** A further condition on the stored task (e.g. that the caller still holds its lease). */
  guard: (doc: TaskDocument) => boolean = () => true,
): Promise<TaskDocument | undefined> {
  let moved = false;
  const result = await updateTask(store, id, (doc) => {
    moved = from.includes(doc.state) && guard(doc);
    if (!moved) return undefined;
    return transition({ ...doc, ...patch(doc) }, to, statusMessage);
  });
  return moved ? result : undefined;
}
