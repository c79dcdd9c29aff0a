/** VHDX (Hyper-V generation 2 virtual disk): sniffing and reading. */
import type { DiskFormat } from '../format';
import { openVhdx } from './reader';
import { sniffVhdx } from './sniff';

export const vhdxFormat: DiskFormat = {
  name: 'vhdx',
  sniff: (head) => sniffVhdx(head),
  open: openVhdx,
};

export { openVhdx } from './reader';
export { sniffVhdx } from './sniff';
export { crc32c, vhdxChecksum } from './crc32c';
export { guidBytes, guidText } from './vhdx-guid';
