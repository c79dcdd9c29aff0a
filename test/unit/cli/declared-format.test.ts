/**
 * `imaging info|check|convert -f FORMAT`, as qemu-img users expect: a declared format that is not
 * what the bytes are is refused with the service's own refusal (the convert stage's
 * format-mismatch check), and so is a name whose extension names a format the bytes are not.
 */
import { copyFileSync, existsSync, writeFileSync } from 'fs';
import { join } from 'path';
import { PassThrough } from 'stream';
import { checkCommand, convertCommand, infoCommand, type CommandOutput } from '../../../cli/toolkit-commands';
import { convertImage } from '../../../toolkit/convert/convert-image';
import type { FormatName } from '../../../toolkit/formats/format';
import { DiscardSink } from '../../../toolkit/io/discard-sink';
import { FileSource } from '../../../toolkit/io/file-source';
import { qemuImg, seededBytes, tempDir } from '../../helpers/disk-corpus';

function capture(): CommandOutput & { text(): { stdout: string; stderr: string } } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out = { stdout: '', stderr: '' };
  stdout.on('data', (chunk) => (out.stdout += chunk));
  stderr.on('data', (chunk) => (out.stderr += chunk));
  return { stdout, stderr, text: () => out };
}

/** The line the service's refusal becomes: what the convert stage's convertImage throws for this claim. */
async function serviceRefusal(path: string, claimedFormat: FormatName): Promise<string> {
  const source = await FileSource.open(path);
  try {
    await convertImage({ source, sink: new DiscardSink(0), output: 'raw', claimedFormat });
  } catch (error) {
    const refusal = error as { message: string; check: string };
    return `error: ${refusal.message} [check: ${refusal.check}]\n`;
  } finally {
    await source.close();
  }
  throw new Error(`the service accepted ${path} declared ${claimedFormat}`);
}

const EXTENSION_HINT = /^\(the name's extension \.\w+ declared the format; rename the file, or give -f with the format it really has\)\n$/;

describe('declared formats (-f/--format and the name\'s extension)', () => {
  let dir: string;
  let qcow2: string;
  let randomVhdx: string;

  beforeAll(() => {
    dir = tempDir();
    qcow2 = join(dir, 'disk.qcow2');
    qemuImg('create', '-f', 'qcow2', qcow2, '16M');
    randomVhdx = join(dir, 'random.vhdx');
    writeFileSync(randomVhdx, seededBytes(1024 * 1024, 9));
  });

  it('convert -f vmdk of a qcow2 file is refused with the service\'s message, and writes nothing', async () => {
    const out = capture();
    const target = join(dir, 'out-vmdk-claim.raw');
    expect(await convertCommand(qcow2, target, { format: 'vmdk', out })).toBe(1);
    expect(out.text().stderr).toBe(await serviceRefusal(qcow2, 'vmdk'));
    expect(out.text().stderr).toBe('error: the image was declared VMDK but is a QCOW2 (v3) file; declare the format it really has [check: format-mismatch]\n');
    expect(existsSync(target)).toBe(false);
  });

  it('-f raw of a qcow2 file is refused, as the service refuses a RAW import that is a QCOW2', async () => {
    const out = capture();
    expect(await convertCommand(qcow2, join(dir, 'out-raw-claim.raw'), { format: 'raw', out })).toBe(1);
    expect(out.text().stderr).toBe(await serviceRefusal(qcow2, 'raw'));
    expect(out.text().stderr).toMatch(/declared RAW but is a QCOW2/);
  });

  it('info and check take -f too; qemu-img\'s names and any case are accepted', async () => {
    const info = capture();
    expect(await infoCommand(qcow2, { format: 'vpc', out: info })).toBe(1);
    expect(info.text().stderr).toBe(await serviceRefusal(qcow2, 'vhd'));

    const check = capture();
    expect(await checkCommand(qcow2, { format: 'vmdk', out: check })).toBe(1);
    expect(check.text().stderr).toBe(await serviceRefusal(qcow2, 'vmdk'));

    const right = capture();
    expect(await infoCommand(qcow2, { format: 'QCOW2', json: true, out: right })).toBe(0);
    expect(JSON.parse(right.text().stdout)).toMatchObject({ format: 'qcow2' });
  });

  it('an unknown -f is a usage error', async () => {
    const out = capture();
    expect(await infoCommand(qcow2, { format: 'qcow9', out })).toBe(2);
    expect(out.text().stderr).toBe('error: unknown format qcow9 (one of raw, qcow2, vmdk, vhd, vpc, vhdx, ova)\n');
  });

  it('without -f, random bytes named .vhdx are refused, not converted as raw', async () => {
    const out = capture();
    const target = join(dir, 'from-random.raw');
    expect(await convertCommand(randomVhdx, target, { out })).toBe(1);
    const [line, hint] = out.text().stderr.split(/(?<=\n)/);
    expect(line).toBe(await serviceRefusal(randomVhdx, 'vhdx'));
    expect(line).toMatch(/declared VHDX but has no VHDX header \(it would be read as a RAW disk\)/);
    expect(hint).toMatch(EXTENSION_HINT);
    expect(existsSync(target)).toBe(false);
    // Declared raw, they are raw.
    expect(await convertCommand(randomVhdx, target, { format: 'raw', out: capture() })).toBe(0);
  });

  it('without -f, a qcow2 named .vmdk is refused; -f with its real format accepts it', async () => {
    const named = join(dir, 'disk.vmdk');
    copyFileSync(qcow2, named);
    for (const command of [infoCommand, checkCommand]) {
      const out = capture();
      expect(await command(named, { out })).toBe(1);
      expect(out.text().stderr).toContain((await serviceRefusal(named, 'vmdk')).trim());
      expect(out.text().stderr.split('\n')[1] + '\n').toMatch(EXTENSION_HINT);
    }
    const refused = capture();
    expect(await convertCommand(named, join(dir, 'from-named.raw'), { out: refused })).toBe(1);
    expect(existsSync(join(dir, 'from-named.raw'))).toBe(false);

    expect(await convertCommand(named, join(dir, 'from-named.raw'), { format: 'qcow2', out: capture() })).toBe(0);
  });

  it('names that do not name one format (.img, none) are sniffed', async () => {
    for (const name of ['disk.img', 'disk']) {
      const path = join(dir, name);
      copyFileSync(qcow2, path);
      const out = capture();
      expect(await infoCommand(path, { json: true, out })).toBe(0);
      expect(JSON.parse(out.text().stdout)).toMatchObject({ format: 'qcow2' });
    }
  });
});
