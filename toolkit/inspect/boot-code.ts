/**
 * Whether the MBR carries BIOS boot code, and whose: the first 440 bytes of sector 0 are the
 * bootstrap code area (the disk signature and the table follow). A disk made by a partitioning
 * tool alone has zeros there; a bootloader install writes code and, usually, its own strings.
 */
const BOOT_CODE_BYTES = 440;

const LOADER_STRINGS: [string, string][] = [
  ['GRUB ', 'GRUB'],
  ['SYSLINUX', 'SYSLINUX'],
  ['EXTLINUX', 'EXTLINUX'],
  ['Invalid partition table', 'Windows MBR'],
  ['Missing operating system', 'MBR boot code'],
  ['LILO', 'LILO'],
];

export interface BiosBootCode {
  present: boolean;
  /** Which loader's strings it carries, when it says. */
  loader?: string;
}

export function biosBootCode(sector0: Buffer): BiosBootCode {
  const code = sector0.subarray(0, Math.min(BOOT_CODE_BYTES, sector0.length));
  if (code.every((byte) => byte === 0)) return { present: false };
  const text = code.toString('latin1');
  const known = LOADER_STRINGS.find(([needle]) => text.includes(needle));
  return known ? { present: true, loader: known[1] } : { present: true };
}
