/**
 * Recognising a VHD: its footer ('conectix') at the start (a dynamic disk's copy) or at the end.
 * Kept apart from the reader so that telling formats apart loads no reader.
 */
import type { RandomAccessSource } from '../../io/source';
import { VHD_FOOTER_COOKIE, VHD_FOOTER_SIZE, decodeVhdFooter, type VhdFooter } from './vhd-footer';

export interface LocatedFooter { footer: VhdFooter; raw: Buffer; offset: number }

/** Finds the footer at EOF−512, or the 511-byte footer of old Virtual PC versions at EOF−511. */
export async function readTrailingFooter(source: RandomAccessSource): Promise<LocatedFooter | null> {
  for (const length of [VHD_FOOTER_SIZE, VHD_FOOTER_SIZE - 1]) {
    if (source.size < length) continue;
    const offset = source.size - length;
    const bytes = await source.read(offset, length);
    if (bytes.toString('latin1', 0, 8) !== VHD_FOOTER_COOKIE) continue;
    const raw = Buffer.alloc(VHD_FOOTER_SIZE);
    bytes.copy(raw);
    return { footer: decodeVhdFooter(raw), raw, offset };
  }
  return null;
}

export async function sniffVhd(head: Buffer, source: RandomAccessSource): Promise<boolean> {
  if (head.length >= 8 && head.toString('latin1', 0, 8) === VHD_FOOTER_COOKIE) return true;
  return (await readTrailingFooter(source)) !== null;
}
