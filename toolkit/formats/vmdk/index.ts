/**
 * VMDK: hosted sparse extents (monolithicSparse, streamOptimized). Reading: header.ts →
 * checks.ts → layout.ts, grain-tables.ts → extent-map.ts → reader.ts; writing:
 * stream-optimized-writer.ts.
 */
import type { DiskFormat, DiskImageWriter } from '../format';
import { VmdkReader } from './reader';
import { looksLikeVmdk } from './sniff';
import { StreamOptimizedVmdkWriter } from './stream-optimized-writer';

export { VmdkReader } from './reader';
export { StreamOptimizedVmdkWriter } from './stream-optimized-writer';

export const vmdkFormat: DiskFormat = {
  name: 'vmdk',
  sniff: async (head) => looksLikeVmdk(head),
  open(source, options) {
    return VmdkReader.open(source, options);
  },
};

export const vmdkStreamOptimizedWriter: DiskImageWriter = new StreamOptimizedVmdkWriter();
