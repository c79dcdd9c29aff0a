/**
 * Young-generation garbage collection for worker threads, called after each batch.
 *
 * A batch makes garbage in the worker (zlib's output buffers, one per unit), all of it external
 * memory that V8 only collects once some 64 MiB of it has piled up, and a worker's JavaScript heap
 * is too small to trigger collection sooner: per worker tens of MiB resident for nothing. A minor
 * collection takes well under a millisecond here.
 *
 * `gc` is reached through a fresh vm context created after --expose-gc is set; on a runtime that
 * refuses the flag, collectGarbage does nothing.
 */
import { setFlagsFromString } from 'v8';
import { runInNewContext } from 'vm';

type GcFunction = (options: { type: 'minor' | 'major' }) => void;

function findGc(): GcFunction | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    return typeof gc === 'function' ? (gc as GcFunction) : undefined;
  } catch {
    return undefined;
  }
}

const gc = findGc();

export function collectGarbage(): void {
  gc?.({ type: 'minor' });
}
