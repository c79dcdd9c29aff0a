/**
 * The architecture a kernel (or EFI loader) was built for, from its first bytes:
 *   ELF:      "\x7fELF", e_machine u16 at 18 (3 i386, 0x3e x86-64, 0xb7 aarch64)
 *   bzImage:  "HdrS" at 0x202 (x86 boot protocol); xloadflags at 0x236, bit 0 = 64-bit entry
 *             (protocol 2.12+; older kernels cannot say, and are reported as x86)
 *   arm64 Image: "ARM\x64" at 0x38 (Documentation/arch/arm64/booting.rst)
 *   PE/COFF (EFI stub, zboot, EFI loaders): "MZ", PE offset u32 at 0x3c, machine u16 at PE+4
 *             (0x14c i386, 0x8664 x86-64, 0xaa64 arm64)
 *   gzip:     a compressed Image (arm64 vmlinuz); its start is inflated and looked at again
 */
import { constants, inflateRawSync } from 'zlib';

export type Architecture = 'i386' | 'x86_64' | 'arm64';

/** Bytes of a kernel file to read for this. */
export const KERNEL_HEADER_BYTES = 64 * 1024;

const ELF_MACHINES: Record<number, Architecture> = { 0x03: 'i386', 0x3e: 'x86_64', 0xb7: 'arm64' };
const PE_MACHINES: Record<number, Architecture> = { 0x14c: 'i386', 0x8664: 'x86_64', 0xaa64: 'arm64' };

export function kernelArchitecture(head: Buffer, depth = 0): Architecture | undefined {
  if (head.length >= 20 && head.readUInt32BE(0) === 0x7f454c46) return ELF_MACHINES[head.readUInt16LE(18)];
  if (head.length >= 0x240 && head.toString('latin1', 0x202, 0x206) === 'HdrS') {
    const protocol = head.readUInt16LE(0x206);
    if (protocol >= 0x20c) return head[0x236] & 1 ? 'x86_64' : 'i386';
    return undefined;
  }
  if (head.length >= 0x3c && head.readUInt32LE(0x38) === 0x644d5241) return 'arm64';
  if (head.length >= 0x40 && head.toString('latin1', 0, 2) === 'MZ') {
    const pe = head.readUInt32LE(0x3c);
    if (pe + 6 <= head.length && head.toString('latin1', pe, pe + 4) === 'PE\0\0') return PE_MACHINES[head.readUInt16LE(pe + 4)];
  }
  if (depth === 0 && head.length > 18 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 8) {
    const flags = head[3];
    let at = 10;
    if (flags & 4) at += 2 + head.readUInt16LE(at);
    if (flags & 8) at = head.indexOf(0, at) + 1;
    if (flags & 16) at = head.indexOf(0, at) + 1;
    if (flags & 2) at += 2;
    if (at <= 0 || at >= head.length) return undefined;
    try {
      const inflated = inflateRawSync(head.subarray(at), { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: KERNEL_HEADER_BYTES });
      return kernelArchitecture(inflated, 1);
    } catch {
      return undefined;
    }
  }
  return undefined;
}
