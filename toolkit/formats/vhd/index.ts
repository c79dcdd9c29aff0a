/** VHD (Virtual PC / Hyper-V generation 1 virtual disk): reader, sniffing and writers. */
import type { DiskFormat, DiskImageWriter } from '../format';
import { openVhd } from './reader';
import { sniffVhd } from './sniff';
import { createVhdDynamicWriter, createVhdFixedWriter } from './vhd-writer';

export const vhdFormat: DiskFormat = {
  name: 'vhd',
  sniff: sniffVhd,
  open: openVhd,
};

/** Dynamic VHD, 2 MiB blocks: only non-zero blocks when the sink can patch its head, else every block (see vhd-writer.ts). */
export const vhdDynamicWriter: DiskImageWriter = createVhdDynamicWriter();
/** Fixed VHD: the disk bytes followed by the footer. */
export const vhdFixedWriter: DiskImageWriter = createVhdFixedWriter();

export { openVhd, VHD_MAX_BAT_ENTRIES } from './reader';
export { sniffVhd } from './sniff';
export { createVhdDynamicWriter, createVhdFixedWriter, dynamicVhdLayout, VHD_DYNAMIC_BLOCK_SIZE, type VhdWriterOptions } from './vhd-writer';
export { vhdVirtualSize, vhdGeometry, vhdChecksum, decodeVhdFooter, VHD_FOOTER_LAYOUT, type VhdFooter } from './vhd-footer';
