/**
 * Recognising a QCOW2 image: the magic alone decides. A qcow2 file with an unsupported version must
 * still be recognised as qcow2 (and refused by open), never fall through to being read as a raw
 * disk. Kept apart from the reader so that telling formats apart loads no reader.
 */
import { QCOW2_MAGIC } from './header';

export async function sniffQcow2(head: Buffer): Promise<boolean> {
  return head.length >= 4 && head.readUInt32BE(0) === QCOW2_MAGIC;
}
