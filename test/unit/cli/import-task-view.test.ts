/**
 * An import-image task as DescribeImportImageTasks renders it and `imaging
 * describe-import-image-tasks --json` reads it back: Platform, Architecture and BootMode are the
 * request's, filled in from the guest report; the report (<validation>) and the boot check's
 * verdict (<bootCheck>) come back as the task keeps them; a failed task is deleted with the
 * report's message. And the extension parameters BootCheck / BootCheckMarker as the gateway
 * parses them.
 */
import { XMLParser } from 'fast-xml-parser';
import { importImageTaskXml } from '../../../gateway/actions/import-task-xml';
import { importImage } from '../../../gateway/actions/import-image';
import type { ActionContext } from '../../../gateway/actions/action';
import { QueryParams } from '../../../gateway/query-request';
import { renderResponse } from '../../../gateway/xml';
import { formatImportTask, importTaskView } from '../../../cli/commands/import-tasks';
import type { BootCheckResult, ImportImageSpec, TaskDocument, ValidationReport } from '../../../tasks/task';

// As cli/ec2-client.ts parses answers.
const parser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: (name) => name === 'item' });

const debian: ValidationReport = {
  sizeBytes: 60_829_753,
  partitionTable: 'mbr',
  purpose: 'system',
  os: { family: 'linux', distribution: 'debian', version: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)', location: 'partition 2' },
  kernels: [{ path: '/boot/vmlinuz-6.1.0-18-amd64', version: '6.1.0-18-amd64', architecture: 'x86_64', initramfs: '/boot/initrd.img-6.1.0-18-amd64' }],
  bootMode: 'both',
  architecture: 'x86_64',
  filesystems: [
    { type: 'vfat', partition: 1, label: 'EFI', uuid: '7E85-7BAD', role: 'esp' },
    { type: 'ext4', partition: 2, uuid: '1b6f4a1e-6f0b-4e55-9d8c-1a2b3c4d5e01', role: 'linux-root', mountpoint: '/' },
  ],
  findings: [],
  verdict: { accepted: true, message: 'accepted: Debian GNU/Linux 12 (bookworm), x86_64, boots with legacy BIOS or UEFI, kernel 6.1.0-18-amd64' },
  bytesRead: 524_288,
};

const booted: BootCheckResult = {
  booted: true,
  reached: 'marker',
  message: 'booted to the marker "IMAGING-BOOT-CHECK: init reached" in 40.5 s',
  accelerator: 'tcg',
  elapsedMs: 40_512,
  console: ['[    9.208877] Run /init as init process', 'IMAGING-BOOT-CHECK: init reached'],
};

function task(spec: Partial<ImportImageSpec>, state: TaskDocument['state'], artifacts: TaskDocument['artifacts'], statusMessage = ''): TaskDocument {
  const now = '2026-12-06T21:00:00.000Z';
  return {
    id: 'import-ami-0123456789abcdef0', kind: 'import-image', accountId: '111122223333', state, statusMessage, progress: state === 'completed' ? 100 : 95, bytesConverted: 1,
    request: { format: 'RAW', bytes: 60_829_753, manifestUrl: '', volumeSizeGiB: 1, importImage: { source: { bucket: 'b', key: 'disk.raw' }, ...spec } },
    artifacts, history: [], createdAt: now, updatedAt: now, expiresAt: now, version: 1,
  };
}

function throughTheWire(doc: TaskDocument) {
  const xml = renderResponse('DescribeImportImageTasks', 'req-1', { importImageTaskSet: [importImageTaskXml(doc)] });
  const parsed = parser.parse(xml).DescribeImportImageTasksResponse;
  return importTaskView(parsed.importImageTaskSet.item[0], 'image');
}

test('a completed import shows Platform, Architecture and BootMode from the report, the report and the boot check', () => {
  const view = throughTheWire(task({ architecture: 'x86_64' }, 'completed', { validation: debian, bootCheck: booted, imageId: 'ami-0123456789abcdef0' }));
  expect(view).toMatchObject({ status: 'completed', imageId: 'ami-0123456789abcdef0', platform: 'Linux', architecture: 'x86_64', bootMode: 'uefi-preferred' });
  expect(view.validation).toEqual(debian);
  expect(view.bootCheck).toEqual(booted);
  const text = formatImportTask(view);
  expect(text).toContain('  platform        Linux');
  expect(text).toContain('  boot mode       uefi-preferred');
  expect(text).toContain(`  validation      ${debian.verdict!.message}`);
  expect(text).toContain(`  boot check      ${booted.message}`);
});

test('what the request said stays: a requested Platform and BootMode', () => {
  const view = throughTheWire(task({ architecture: 'x86_64', platform: 'Windows', bootMode: 'legacy-bios' }, 'completed', { validation: debian }));
  expect(view).toMatchObject({ platform: 'Windows', architecture: 'x86_64', bootMode: 'legacy-bios' });
  expect(view.bootCheck).toBeUndefined();
});

test('a refused disk: deleted, the report\'s message as StatusMessage, and what was found', () => {
  const message = 'ClientError: Architecture x86_64 was requested but the guest\'s kernel /boot/vmlinuz-6.1.0-18-arm64 is arm64; request Architecture arm64';
  const arm: ValidationReport = { ...debian, architecture: 'arm64', bootMode: 'uefi', verdict: { accepted: false, message }, findings: [{ severity: 'error', code: 'architecture-mismatch', message: message.slice('ClientError: '.length) }] };
  const view = throughTheWire(task({ architecture: 'x86_64' }, 'failed', { validation: arm }, message));
  expect(view).toMatchObject({ status: 'deleted', statusMessage: message, platform: 'Linux', architecture: 'arm64', bootMode: 'uefi' });
  expect(view.validation).toEqual(arm);
});

test('before validation: the request\'s values, no report', () => {
  const view = throughTheWire(task({ architecture: 'x86_64' }, 'bundle-decrypted', {}));
  expect(view).toMatchObject({ status: 'active', statusMessage: 'converting', architecture: 'x86_64' });
  expect(view.platform).toBeUndefined();
  expect(view.bootMode).toBeUndefined();
  expect(view.validation).toBeUndefined();
});

describe('ImportImage extension parameters BootCheck and BootCheckMarker', () => {
  const ctx = { allowedObjectHosts: ['objects.test'] } as unknown as ActionContext;
  const base = { 'DiskContainer.1.Format': 'RAW', 'DiskContainer.1.UserBucket.S3Bucket': 'bucket', 'DiskContainer.1.UserBucket.S3Key': 'disk.raw' };
  const parse = (extra: Record<string, string>) => importImage.validate(new QueryParams(Object.entries({ ...base, ...extra })), ctx);

  test('asked, with or without a marker; not asked', async () => {
    expect((await parse({ BootCheck: 'true' })).request.bootCheck).toEqual({});
    expect((await parse({ BootCheck: 'true', BootCheckMarker: 'login:' })).request.bootCheck).toEqual({ marker: 'login:' });
    expect((await parse({ BootCheckMarker: 'ready' })).request.bootCheck).toEqual({ marker: 'ready' });
    expect((await parse({})).request.bootCheck).toBeUndefined();
    expect((await parse({ BootCheck: 'false' })).request.bootCheck).toBeUndefined();
  });

  test('refused with EC2 error codes', async () => {
    await expect(parse({ BootCheck: 'yes' })).rejects.toMatchObject({ code: 'InvalidParameterValue' });
    await expect(parse({ BootCheck: 'false', BootCheckMarker: 'login:' })).rejects.toMatchObject({ code: 'InvalidParameterCombination' });
    await expect(parse({ BootCheckMarker: 'x'.repeat(201) })).rejects.toMatchObject({ code: 'InvalidParameterValue' });
    await expect(parse({ BootCheckMarker: 'two\nlines' })).rejects.toMatchObject({ code: 'InvalidParameterValue' });
  });
});
