/**
 * QCOW2 (qemu copy-on-write, versions 2 and 3) behind the common DiskFormat interface.
 * Spec: qemu docs/interop/qcow2.rst. Shape, as in every format folder: header.ts (the on-disk
 * fields) → checks.ts (the named safety checks; layout.ts applies them to the header) →
 * extent-map.ts (L2 tables to extents) → reader.ts (composes them).
 */
import type { DiskFormat } from '../format';
import { QCOW2_MAGIC } from './header';
import { Qcow2Reader } from './reader';

export const qcow2Format: DiskFormat = {
  name: 'qcow2',
  /**
   * The magic alone decides: a qcow2 file with an unsupported version must still be recognised
   * as qcow2 (and refused by open), never fall through to being read as a raw disk.
   */
  async sniff(head) {
    return head.length >= 4 && head.readUInt32BE(0) === QCOW2_MAGIC;
  },
  open(source, options) {
    return Qcow2Reader.open(source, options);
  },
};

export { Qcow2Reader } from './reader';
export { QCOW2_CHECKS, qcow2Checks } from './checks';
export type { Qcow2Layout } from './layout';
