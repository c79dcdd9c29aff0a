/**
 * Recognising a VMDK: a sparse extent header or a text descriptor. Kept apart from the reader so
 * that telling formats apart loads no reader.
 */
import { DESCRIPTOR_FILE_SIGNATURE } from './descriptor';
import { VMDK_MAGIC } from './header';

/** Looks like a VMDK: a sparse extent header, or a text descriptor (opened only to be refused with a reason). */
export function looksLikeVmdk(head: Buffer): boolean {
  if (head.length >= 4 && head.readUInt32LE(0) === VMDK_MAGIC) return true;
  const start = head.toString('latin1', 0, Math.min(head.length, 64)).replace(/\s+/g, '').toLowerCase();
  return start.startsWith(DESCRIPTOR_FILE_SIGNATURE.replace(/\s+/g, '').toLowerCase());
}
