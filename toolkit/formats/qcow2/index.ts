/**
 * QCOW2 (qemu copy-on-write, versions 2 and 3) behind the common DiskFormat interface.
 * Spec: qemu docs/interop/qcow2.rst. Shape, as in every format folder: header.ts (the on-disk
 * fields) → checks.ts (the named safety checks; layout.ts applies them to the header) →
 * extent-map.ts (L2 tables to extents) → reader.ts (composes them).
 */
import type { DiskFormat } from '../format';
import { sniffQcow2 } from './sniff';
import { Qcow2Reader } from './reader';

export const qcow2Format: DiskFormat = {
  name: 'qcow2',
  sniff: sniffQcow2,
  open(source, options) {
    return Qcow2Reader.open(source, options);
  },
};

export { Qcow2Reader } from './reader';
export { QCOW2_CHECKS, qcow2Checks } from './checks';
export type { Qcow2Layout } from './layout';
