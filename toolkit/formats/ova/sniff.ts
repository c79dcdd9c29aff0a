/**
 * Recognising an OVA: a tar whose first member is the .ovf descriptor, as the OVF spec requires of
 * an OVA. Kept apart from the reader so that telling formats apart loads no reader.
 */
import { BLOCK, isTarHeader, parseTarHeader } from '../../bundle/tar';

export function looksLikeOva(head: Buffer): boolean {
  if (head.length < BLOCK || head.toString('latin1', 257, 262) !== 'ustar' || !isTarHeader(head)) return false;
  let first;
  try {
    first = parseTarHeader(head.subarray(0, BLOCK), 0);
  } catch {
    return false;
  }
  let name = first.name;
  if (first.typeflag === 'L' && head.length >= 2 * BLOCK && first.size <= BLOCK) {
    name = head.toString('utf8', BLOCK, BLOCK + first.size).replace(/\0.*$/s, '');
  }
  return name.toLowerCase().endsWith('.ovf');
}
