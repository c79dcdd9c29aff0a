/**
 * Dynamic validation under qemu-system-x86_64, software emulation (TCG: the same on every CI
 * host; a nested /dev/kvm can be slower than TCG): a disk that really boots Linux (SYSLINUX, the
 * host's Debian kernel, a busybox initramfs) reaches its marker line on the serial console; a
 * disk whose boot sector is empty gets SeaBIOS as far as "Booting from Hard Disk..." and the
 * verdict "no bootloader"; a disk whose boot code loops forever gets past the firmware and is
 * stopped at the time limit. Every boot is bounded by its time limit.
 */
import { openSync, closeSync, ftruncateSync, writeSync } from 'fs';
import { bootCheck } from '../../../toolkit/inspect/boot-check';
import { workspace, type Workspace } from '../../helpers/guest-images';
import { BOOT_MARKER, makeLinuxBootDisk } from '../../helpers/boot-disk';

let ws: Workspace;
beforeAll(() => {
  ws = workspace('boot-check-');
});
afterAll(() => ws?.cleanup());

function disk(name: string, bootSector?: Buffer): string {
  const path = ws.path(name);
  const fd = openSync(path, 'w');
  ftruncateSync(fd, 8 * 2 ** 20);
  if (bootSector) writeSync(fd, bootSector, 0, bootSector.length, 0);
  closeSync(fd);
  return path;
}

test('a disk whose boot sector is empty fails with "no bootloader"', async () => {
  const report = await bootCheck(disk('empty.raw'), { timeoutMs: 60_000, memoryMiB: 64, accelerator: 'tcg' });
  console.log(`boot check (${report.accelerator}) of an empty disk: ${report.message} after ${report.elapsedMs} ms`);
  expect(report.booted).toBe(false);
  expect(report.reached).toBe('firmware');
  expect(report.message).toMatch(/^no bootloader: /);
  expect(report.firmware.join('\n')).toContain('Boot failed: not a bootable disk');
}, 90_000);

test('boot code that never loads a kernel is stopped at the time limit, past the firmware', async () => {
  const sector = Buffer.alloc(512);
  sector[0] = 0xeb; // jmp $ (spins)
  sector[1] = 0xfe;
  sector[510] = 0x55;
  sector[511] = 0xaa;
  const report = await bootCheck(disk('spin.raw', sector), { timeoutMs: 8_000, memoryMiB: 64, accelerator: 'tcg' });
  expect(report.booted).toBe(false);
  expect(report.reached).toBe('bootloader');
  expect(report.message).toBe('stopped after the bootloader stage (no progress within 8 s)');
}, 60_000);

test('a disk with SYSLINUX, a Linux kernel and an initramfs boots to the marker on the serial console', async () => {
  const report = await bootCheck(makeLinuxBootDisk(ws), { timeoutMs: 240_000, memoryMiB: 256, accelerator: 'tcg', marker: BOOT_MARKER });
  console.log(`boot check (${report.accelerator}) of the Linux disk: ${report.message}`);
  expect(report.message).toMatch(/^booted to the marker "IMAGING-BOOT-CHECK: init reached" in \d+\.\d s$/);
  expect(report).toMatchObject({ booted: true, reached: 'marker', accelerator: 'tcg' });
  // The kernel's own lines and init's marker are among the last console lines kept.
  expect(report.console.some((line) => /Run \/init as init process/.test(line))).toBe(true);
  expect(report.console).toContain(BOOT_MARKER);
  expect(report.firmware).toContain('Booting from Hard Disk...');
}, 300_000);
