/**
 * Test helper: feeds a raw disk file to a DiskImageWriter the way the converter would, as
 * contiguous chunks of awkward sizes, with all-zero stretches given as zero chunks.
 */
import { readFileSync } from 'fs';
import type { VirtualChunk } from '../../toolkit/formats/format';

export function rawChunks(path: string, chunkSize = 1024 * 1024 + 333): { virtualSize: number; chunks: AsyncIterable<VirtualChunk> } {
  const raw = readFileSync(path);
  async function* chunks(): AsyncIterable<VirtualChunk> {
    for (let offset = 0; offset < raw.length; offset += chunkSize) {
      const data = raw.subarray(offset, Math.min(raw.length, offset + chunkSize));
      if (data.every((b) => b === 0)) yield { offset, zeroLength: data.length };
      else yield { offset, data };
    }
  }
  return { virtualSize: raw.length, chunks: chunks() };
}
