/**
 * Where a local file holds data, from lseek(2) SEEK_DATA/SEEK_HOLE through the small native addon
 * in toolkit/native (built by `npm install`). Node cannot ask this itself, and a sparse raw disk
 * read without it is read whole: holes included. When the addon was not built, or the file
 * system cannot tell, the whole file counts as data, which is always correct, only slower.
 */
import { existsSync } from 'fs';
import { join } from 'path';
import type { ByteRange } from './source';

interface SparseRangesAddon {
  dataRanges(fd: number, from: number, to: number, maxRanges: number): number[];
}

const ADDON_FILE = join('build', 'Release', 'sparse_ranges.node');
/** Ranges asked of the addon per call: bounds the array it builds, not the ranges a file may have. */
const RANGES_PER_CALL = 4096;

let loaded: SparseRangesAddon | null | undefined;

/** The addon, or null when it was not built. Looked up from the sources (toolkit/io) and from dist/toolkit/io. */
export function sparseRangesAddon(): SparseRangesAddon | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  // For measuring what the addon gives: IMAGING_NO_SPARSE_ADDON=1 reads raw files whole, as without it.
  if (process.env.IMAGING_NO_SPARSE_ADDON === '1') return loaded;
  for (const root of [join(__dirname, '..', '..'), join(__dirname, '..', '..', '..')]) {
    const path = join(root, ADDON_FILE);
    if (!existsSync(path)) continue;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- a native addon at a path found at run time
      loaded = require(path) as SparseRangesAddon;
      break;
    } catch {
      // built for another Node or platform: read files whole
    }
  }
  return loaded;
}

/** File systems that cannot report holes answer with these; the file is then all data. */
const HOLES_UNKNOWN = new Set(['EINVAL', 'EOPNOTSUPP', 'ENOTSUP', 'ESPIPE']);

/**
 * The data ranges of the open file `fd` inside [from, to), ascending and disjoint; the rest reads
 * as zeros. One range [from, to) when holes cannot be known.
 */
export function* fileDataRanges(fd: number, from: number, to: number): Generator<ByteRange> {
  const addon = sparseRangesAddon();
  if (from >= to) return;
  if (!addon) {
    yield { start: from, length: to - from };
    return;
  }
  let position = from;
  let first = true;
  while (position < to) {
    let found: number[];
    try {
      found = addon.dataRanges(fd, position, to, RANGES_PER_CALL);
    } catch (error) {
      if (first && HOLES_UNKNOWN.has((error as { code?: string }).code ?? '')) {
        yield { start: from, length: to - from };
        return;
      }
      throw error;
    }
    first = false;
    for (let i = 0; i < found.length; i += 2) yield { start: found[i], length: found[i + 1] - found[i] };
    if (found.length < RANGES_PER_CALL * 2) return;
    position = found[found.length - 1];
  }
}
