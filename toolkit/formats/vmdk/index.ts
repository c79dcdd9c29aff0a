/**
 * VMDK: hosted sparse extents (monolithicSparse, streamOptimized). Reading: header.ts →
 * checks.ts → layout.ts, grain-tables.ts → extent-map.ts → reader.ts; writing:
 * stream-optimized-writer.ts.
 */
import type { DiskFormat, DiskImageWriter } from '../format';
import { looksLikeVmdk, VmdkReader } from './reader';
import { StreamOptimizedVmdkWriter } from './stream-optimized-writer';

export { VmdkReader } from './reader';
export { StreamOptimizedVmdkWriter } from './stream-optimized-writer';

export const vmdkFormat: DiskFormat = {
  name: 'vmdk',
  async sniff(head) {
    return looksLikeVmdk(head);
  },
  open(source, options) {
    return VmdkReader.open(source, options);
  },
};

export const vmdkStreamOptimizedWriter: DiskImageWriter = new StreamOptimizedVmdkWriter();
