/**
 * `imaging inspect` on images of other formats (read in place through the reader's block map),
 * and the cost of inspecting a large sparse disk: bytes read are counted and bounded.
 */
import { execFileSync } from 'child_process';
import { PassThrough } from 'stream';
import { inspectCommand } from '../../../cli/commands/inspect';
import { FileSource } from '../../../toolkit/io/file-source';
import { inspectGuest } from '../../../toolkit/inspect/guest';
import { UUIDS, debianTree, makeDisk, workspace, type Workspace } from '../../helpers/guest-images';

const MiB = 1024 * 1024;
let ws: Workspace;
let debian: string;

function capture(): { out: { stdout: PassThrough; stderr: PassThrough }; text: () => { stdout: string; stderr: string } } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  stdout.on('data', (c: Buffer) => chunks.stdout.push(c));
  stderr.on('data', (c: Buffer) => chunks.stderr.push(c));
  return { out: { stdout, stderr }, text: () => ({ stdout: Buffer.concat(chunks.stdout).toString(), stderr: Buffer.concat(chunks.stderr).toString() }) };
}

beforeAll(() => {
  ws = workspace('inspect-cli-');
  debian = makeDisk(ws, 'debian', {
    table: 'mbr',
    biosBootCode: true,
    partitions: [{ sizeMiB: 24, bootable: true, fs: { kind: 'ext4', label: 'root', uuid: UUIDS.debianRoot, tree: debianTree() } }],
  });
});

afterAll(() => ws?.cleanup());

describe('imaging inspect', () => {
  it.each([
    ['qcow2', ['-O', 'qcow2', '-c']],
    ['vmdk', ['-O', 'vmdk', '-o', 'subformat=streamOptimized']],
    ['vhd', ['-O', 'vpc']],
  ])('reads a %s image in place and prints the report and verdict', async (format, args) => {
    const file = ws.path(`debian.${format}`);
    execFileSync('qemu-img', ['convert', '-f', 'raw', ...args, debian, file]);
    const { out, text } = capture();
    const code = await inspectCommand(file, { out });
    const { stdout } = text();
    expect(code).toBe(0);
    expect(stdout).toContain(`image:         debian.${format} (${format.toUpperCase()}`);
    expect(stdout).toContain('os:            Debian GNU/Linux 12 (bookworm) (linux 12) on partition 1');
    expect(stdout).toContain('   1  1 MiB +24 MiB, Linux, active, ext4 4096-byte blocks, label root, UUID 1b6f4a1e-6f0b-4e55-9d8c-1a2b3c4d5e01, mounted on /, linux-root');
    expect(stdout).toContain('  /boot/vmlinuz-6.1.0-18-amd64 (x86_64), initramfs /boot/initrd.img-6.1.0-18-amd64');
    expect(stdout).toContain('verdict:       accepted: Debian GNU/Linux 12 (bookworm), x86_64, boots with legacy BIOS, kernel 6.1.0-18-amd64\n');
  });

  it('prints JSON, honours the requested boot mode, and refuses a wrong declared format', async () => {
    const json = capture();
    expect(await inspectCommand(debian, { json: true, bootMode: 'uefi', out: json.out })).toBe(1);
    const report = JSON.parse(json.text().stdout);
    expect(report.image).toMatchObject({ name: 'debian.raw', format: 'raw' });
    expect(report.verdict.accepted).toBe(false);
    expect(report.findings.map((f: { code: string }) => f.code)).toContain('boot-mode-mismatch');

    const wrong = capture();
    expect(await inspectCommand(debian, { format: 'qcow2', out: wrong.out })).toBe(1);
    expect(wrong.text().stderr).toBe('error: the image was declared QCOW2 but has no QCOW2 header (it would be read as a RAW disk); declare the format it really has [check: format-mismatch]\n');
    const unknown = capture();
    expect(await inspectCommand(debian, { format: 'iso', out: unknown.out })).toBe(2);
  });
});

describe('cost', () => {
  it('inspects a 10 GiB sparse disk reading less than 2 MiB', async () => {
    const big = makeDisk(ws, 'big', {
      table: 'gpt',
      biosBootCode: true,
      sizeMiB: 10 * 1024,
      partitions: [{ sizeMiB: 10 * 1024 - 4, fs: { kind: 'ext4', label: 'root', uuid: UUIDS.debianRoot, tree: debianTree() } }],
    });
    const source = await FileSource.open(big);
    try {
      const report = await inspectGuest(source);
      const mib = report.bytesRead / MiB;
      process.stdout.write(`inspecting a ${source.size / 1024 ** 3} GiB sparse disk read ${report.bytesRead} bytes (${mib.toFixed(2)} MiB)\n`);
      expect(report.verdict.message).toBe('accepted: Debian GNU/Linux 12 (bookworm), x86_64, boots with legacy BIOS, kernel 6.1.0-18-amd64');
      expect(report.bytesRead).toBeLessThan(2 * MiB);
    } finally {
      await source.close();
    }
  });

  it('stops at the read budget it is given, rather than mistaking unread files for missing ones', async () => {
    const source = await FileSource.open(debian);
    try {
      await expect(inspectGuest(source, { maxBytesRead: 256 * 1024 })).rejects.toThrow(/would read more than 262144 bytes/);
    } finally {
      await source.close();
    }
  });
});
