/** VHDX (Hyper-V generation 2 virtual disk): sniffing and reading. */
import type { DiskFormat } from '../format';
import { openVhdx, sniffVhdx } from './reader';

export const vhdxFormat: DiskFormat = {
  name: 'vhdx',
  sniff: (head) => sniffVhdx(head),
  open: openVhdx,
};

export { openVhdx, sniffVhdx } from './reader';
export { crc32c, vhdxChecksum } from './crc32c';
export { guidBytes, guidText } from './vhdx-guid';
