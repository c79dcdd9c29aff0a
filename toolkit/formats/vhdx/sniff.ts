/**
 * Recognising a VHDX: its file type identifier. Kept apart from the reader so that telling formats
 * apart loads no reader.
 */
import { VHDX_SIGNATURE } from './header';

export async function sniffVhdx(head: Buffer): Promise<boolean> {
  return head.length >= 8 && head.toString('latin1', 0, 8) === VHDX_SIGNATURE;
}
