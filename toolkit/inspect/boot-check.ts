/**
 * Dynamic validation: boot a raw disk under qemu-system-x86_64 and report how far it got.
 *
 * The disk is attached read-only in effect (-snapshot: writes go to a temporary overlay qemu
 * throws away), with no network, the serial console on a pipe and SeaBIOS's debug console
 * (isa-debugcon at 0x402) in a file, under a time limit. KVM when /dev/kvm is usable, TCG
 * otherwise. The stages, in order:
 *   firmware    SeaBIOS started ("SeaBIOS (version …" on the debug console)
 *   bootloader  the firmware handed over to the disk's boot code ("Booting from Hard Disk...")
 *   kernel      a Linux kernel printed its banner on the serial console ("Linux version …")
 *   init        the kernel started init ("Run /sbin/init as init process", "Freeing unused kernel")
 *   marker      the caller's marker line, or a login prompt / cloud-init on the serial console
 * SeaBIOS's "Boot failed: not a bootable disk" is the "no bootloader" verdict.
 */
import { spawn } from 'child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';

export type BootStage = 'none' | 'firmware' | 'bootloader' | 'kernel' | 'init' | 'marker';

export interface BootCheckOptions {
  /** Give up after this long. Default 120 s. */
  timeoutMs?: number;
  /** A line (substring) on the serial console that means the guest is up. Default: a login prompt or cloud-init. */
  marker?: string;
  /** Guest memory, MiB. Default 512. */
  memoryMiB?: number;
  /** The qemu binary. Default qemu-system-x86_64 on PATH. */
  qemu?: string;
  /** Console lines kept in the report. Default 20. */
  keepLines?: number;
  /**
   * auto (default): KVM when /dev/kvm is usable, else TCG (software emulation). A host whose
   * /dev/kvm is there but slow (nested virtualisation) may be faster with tcg.
   */
  accelerator?: 'auto' | 'kvm' | 'tcg';
  /** Called about once a second while the guest runs (a stage keeps its delivery alive with it). */
  onTick?: (reached: BootStage) => void;
}

export interface BootCheckReport {
  booted: boolean;
  /** How far the guest got. */
  reached: BootStage;
  /** One line a user can act on: "booted to …", "no bootloader: …", "stopped after the kernel: …". */
  message: string;
  accelerator: 'kvm' | 'tcg';
  elapsedMs: number;
  /** The last lines of the serial console. */
  console: string[];
  /** The last lines of the firmware's debug console. */
  firmware: string[];
}

const ORDER: BootStage[] = ['none', 'firmware', 'bootloader', 'kernel', 'init', 'marker'];
const DEFAULT_MARKERS = [/login:\s*$/m, /Cloud-init v\. .* finished/, /cloud-init.*Up \d/];

function kvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export async function bootCheck(rawDisk: string, options: BootCheckOptions = {}): Promise<BootCheckReport> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const keep = options.keepLines ?? 20;
  const wanted = options.accelerator ?? 'auto';
  const accelerator = wanted === 'auto' ? (kvmUsable() ? 'kvm' : 'tcg') : wanted;
  const dir = mkdtempSync(join(tmpdir(), 'boot-check-'));
  const debugLog = join(dir, 'firmware.log');
  const args = [
    '-machine', `pc,accel=${accelerator}`, '-m', String(options.memoryMiB ?? 512),
    '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none', '-nic', 'none', '-no-reboot',
    '-serial', 'stdio',
    '-drive', `file=${rawDisk},format=raw,if=ide,snapshot=on`,
    '-boot', 'order=c,strict=on',
    '-chardev', `file,id=firmware,path=${debugLog}`, '-device', 'isa-debugcon,iobase=0x402,chardev=firmware',
  ];
  const started = Date.now();
  const child = spawn(options.qemu ?? 'qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let serial = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    serial = (serial + chunk.toString('latin1')).slice(-256 * 1024);
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-16 * 1024);
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => resolve(code));
  });
  const firmwareText = (): string => {
    try {
      return readFileSync(debugLog, 'latin1');
    } catch {
      return '';
    }
  };

  // Mutated by judge(); read after the loop.
  let reached = 'none' as BootStage;
  let failure = undefined as string | undefined;
  const advance = (stage: BootStage) => {
    if (ORDER.indexOf(stage) > ORDER.indexOf(reached)) reached = stage;
  };
  const judge = (): boolean => {
    const firmware = firmwareText();
    if (/SeaBIOS \(version/.test(firmware)) advance('firmware');
    const boot = /Booting from Hard Disk\.\.\.\n(.*)/.exec(firmware);
    if (boot) {
      if (/Boot failed: not a bootable disk/.test(boot[1])) failure = 'no bootloader: the firmware found no boot signature in the first sector (the disk has no BIOS boot code); install a bootloader (grub-install) and export the disk again';
      else if (/Boot failed: could not read the boot disk/.test(boot[1])) failure = 'the firmware could not read the disk\'s first sector';
      else advance('bootloader');
    }
    if (/Linux version \d/.test(serial)) advance('kernel');
    if (/Run \S+ as init process|Freeing unused kernel (image )?memory/.test(serial)) advance('init');
    const marker = options.marker ? serial.includes(options.marker) : DEFAULT_MARKERS.some((pattern) => pattern.test(serial));
    if (marker) advance('marker');
    if (/Kernel panic - not syncing: .*/.test(serial)) failure = `kernel panic: ${/Kernel panic - not syncing: (.*)/.exec(serial)![1].trim()}`;
    return failure !== undefined || reached === 'marker';
  };

  let code: number | null | undefined;
  let firmwareAtEnd: string;
  try {
    const deadline = started + timeoutMs;
    let ticked = started;
    while (Date.now() < deadline) {
      const done = await Promise.race([exited.then((c) => ({ exit: c })), new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 250))]);
      if (judge()) break;
      if (options.onTick && Date.now() - ticked >= 1000) {
        ticked = Date.now();
        options.onTick(reached);
      }
      if (done) {
        code = done.exit;
        break;
      }
    }
  } finally {
    if (code === undefined) child.kill('SIGKILL');
    await exited.catch(() => undefined);
    judge();
    firmwareAtEnd = firmwareText();
    rmSync(dir, { recursive: true, force: true });
  }
  const elapsedMs = Date.now() - started;
  const lines = (text: string) =>
    plainText(text)
      .split('\n')
      .filter((line) => line.trim() !== '')
      .slice(-keep);
  const booted = failure === undefined && reached === 'marker';
  const firmware = lines(firmwareAtEnd);
  let message: string;
  if (booted) message = `booted to ${options.marker ? `the marker "${options.marker}"` : 'a login prompt'} in ${(elapsedMs / 1000).toFixed(1)} s`;
  else if (failure) message = failure;
  else if (code !== undefined && reached === 'none') message = `qemu could not start the guest: ${stderr.trim().split('\n').pop() ?? `exit code ${code}`}`;
  else message = `stopped after the ${reached === 'none' ? 'start' : reached} stage${code === undefined ? ` (no progress within ${Math.round(timeoutMs / 1000)} s)` : ''}`;
  return { booted, reached, message, accelerator, elapsedMs, console: lines(serial), firmware };
}

/** The text without terminal escape sequences and control characters but newlines and tabs (lines travel in XML and JSON). */
function plainText(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x1b && text[i + 1] === '[') {
      // CSI: parameters, then one final letter.
      i += 2;
      while (i < text.length && !/[A-Za-z]/.test(text[i])) i++;
      continue;
    }
    if ((code < 0x20 && code !== 0x0a && code !== 0x09) || code === 0x7f) continue;
    out += text[i];
  }
  return out;
}
