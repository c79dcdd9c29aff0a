/** OVA: a tar holding an OVF descriptor and VMDK disks. */
import type { DiskFormat, DiskImageWriter } from '../format';
import { OvaReader, type OvaReaderOptions } from './reader';
import { looksLikeOva } from './sniff';
import { OvaWriter } from './ova-writer';

export { OvaReader } from './reader';
export { OvaWriter } from './ova-writer';
export { parseOvf, buildOvf } from './ovf-descriptor';

export const ovaFormat: DiskFormat = {
  name: 'ova',
  sniff: async (head) => looksLikeOva(head),
  /** `options.diskIndex` picks a disk other than the first. */
  open(source, options) {
    return OvaReader.open(source, options as OvaReaderOptions);
  },
};

export const ovaWriter: DiskImageWriter = new OvaWriter();
