/**
 * The validate stage's report travels to `imaging describe-conversion-tasks --json` as an extra
 * element of DescribeConversionTasks: rendered by the gateway, parsed as the CLI parses answers,
 * it comes back as the report the task keeps.
 */
import { XMLParser } from 'fast-xml-parser';
import { conversionTaskXml } from '../../../gateway/actions/conversion-task-xml';
import { renderResponse } from '../../../gateway/xml';
import { conversionTaskView, formatConversionTask } from '../../../cli/commands/conversion-tasks';
import type { TaskDocument, ValidationReport } from '../../../tasks/task';

// As cli/ec2-client.ts parses answers.
const parser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: (name) => name === 'item' });

const report: ValidationReport = {
  sizeBytes: 44_040_192,
  partitionTable: 'mbr',
  purpose: 'system',
  os: { family: 'linux', distribution: 'debian', version: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)', location: 'partition 1' },
  kernels: [{ path: '/boot/vmlinuz-6.1.0-18-amd64', version: '6.1.0-18-amd64', architecture: 'x86_64', initramfs: '/boot/initrd.img-6.1.0-18-amd64' }],
  bootMode: 'legacy-bios',
  architecture: 'x86_64',
  filesystems: [
    { type: 'ext4', partition: 1, uuid: '1b6f4a1e-6f0b-4e55-9d8c-1a2b3c4d5e01', role: 'linux-root', mountpoint: '/' },
    { type: 'luks', partition: 2, role: 'encrypted', encrypted: true },
  ],
  findings: [{ severity: 'warning', code: 'encrypted-volume', message: 'partition 2 is a LUKS2 encrypted volume; its contents were not inspected' }],
  verdict: { accepted: true, message: 'accepted: Debian GNU/Linux 12 (bookworm), x86_64, boots with legacy BIOS, kernel 6.1.0-18-amd64' },
  bytesRead: 393_216,
};

function task(kind: TaskDocument['kind'], validation?: ValidationReport): TaskDocument {
  const now = '2026-12-06T19:00:00.000Z';
  return {
    id: kind === 'import-volume' ? 'import-vol-0000abcd' : 'import-i-0000abcd', kind, accountId: '111122223333', state: 'completed', statusMessage: '', progress: 100, bytesConverted: 1,
    request: { format: 'RAW', bytes: 1, manifestUrl: 'http://unused/', volumeSizeGiB: 1, ...(kind === 'import-instance' ? { instance: { instanceId: 'i-0123456789abcdef0', architecture: 'x86_64' } } : {}) },
    artifacts: validation ? { validation } : {},
    history: [], createdAt: now, updatedAt: now, expiresAt: now, version: 1,
  };
}

function throughTheWire(doc: TaskDocument) {
  const xml = renderResponse('DescribeConversionTasks', 'req-1', { conversionTasks: [conversionTaskXml(doc)] });
  const parsed = parser.parse(xml).DescribeConversionTasksResponse;
  return conversionTaskView(parsed.conversionTasks.item[0]);
}

test.each(['import-instance', 'import-volume'] as const)('%s: the report comes back as the task keeps it', (kind) => {
  const view = throughTheWire(task(kind, report));
  expect(view.validation).toEqual(report);
  expect(formatConversionTask(view)).toContain(`  validation      ${report.verdict!.message}`);
});

test('a data volume\'s report with no kernels or filesystems, and a task not yet validated', () => {
  const data: ValidationReport = {
    sizeBytes: 3_145_745, partitionTable: 'none', purpose: 'data', kernels: [], bootMode: 'none', filesystems: [],
    findings: [{ severity: 'info', code: 'data-volume', message: 'imported as a data volume: no operating system or bootloader is required' }],
    verdict: { accepted: true, message: 'accepted: data volume, no filesystem that could be identified' }, bytesRead: 65_536,
  };
  expect(throughTheWire(task('import-volume', data)).validation).toEqual(data);
  expect(throughTheWire(task('import-volume')).validation).toBeUndefined();
});

test('an instance\'s kernel, ramdisk, virtualization and layout (ImportInstance\'s extension parameters) come back; a volume task has none', () => {
  const doc = task('import-instance');
  doc.request = { ...doc.request, kernelId: 'eki-0123456789abcdef0', ramdiskId: 'eri-0123456789abcdef0', layout: 'partition' };
  doc.artifacts = { layout: 'partition' };
  const view = throughTheWire(doc);
  expect(view).toMatchObject({ kernelId: 'eki-0123456789abcdef0', ramdiskId: 'eri-0123456789abcdef0', virtualizationType: 'paravirtual', layout: 'partition' });
  const text = formatConversionTask(view);
  expect(text).toContain('  kernel          eki-0123456789abcdef0  ramdisk eri-0123456789abcdef0');
  expect(text).toContain('  boots           paravirtual, partition layout');

  const volume = throughTheWire({ ...task('import-volume'), request: doc.request });
  expect([volume.kernelId, volume.ramdiskId, volume.virtualizationType, volume.layout]).toEqual([undefined, undefined, undefined, undefined]);
});
