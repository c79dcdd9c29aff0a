/** OVA: a tar holding an OVF descriptor and VMDK disks. */
import { BLOCK, isTarHeader, parseTarHeader } from '../../bundle/tar';
import type { DiskFormat, DiskImageWriter } from '../format';
import { OvaReader, type OvaReaderOptions } from './reader';
import { OvaWriter } from './ova-writer';

export { OvaReader } from './reader';
export { OvaWriter } from './ova-writer';
export { parseOvf, buildOvf } from './ovf-descriptor';

export const ovaFormat: DiskFormat = {
  name: 'ova',
  /** A tar whose first member is the .ovf descriptor, as the OVF spec requires of an OVA. */
  async sniff(head) {
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
  },
  /** `options.diskIndex` picks a disk other than the first. */
  open(source, options) {
    return OvaReader.open(source, options as OvaReaderOptions);
  },
};

export const ovaWriter: DiskImageWriter = new OvaWriter();
