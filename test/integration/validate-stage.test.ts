/**
 * The validate stage on real parts (s3rver, SQLite store, disks built by sfdisk and mkfs): it
 * inspects the converted disk in place in the image store and keeps the report on the task. A
 * system disk (ImportInstance) that cannot boot fails the task with the report's message; a data
 * volume (ImportVolume) is reported and accepted whatever it holds.
 */
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdirSync, readFileSync, renameSync } from 'fs';
import type { CloudEvent } from 'cloudevents';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { TaskDocument, TaskKind } from '../../tasks/task';
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { validateStage } from '../../functions/validate/validate-stage';
import type { StageContext } from '../../functions/stage';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { testStageConfig, testStageContext } from '../helpers/stage-config';
import { makeRawDisk, seededBytes } from '../helpers/disk-corpus';
import { UUIDS, debianTree, makeDisk, makeFilesystem, workspace, type Workspace } from '../helpers/guest-images';

const BUCKET = 'validate-images';
const MiB = 2 ** 20;
let s3: RunningS3Server;
let tasks: SqliteTaskStore;
let ws: Workspace;
const published: CloudEvent<unknown>[] = [];

function context(): StageContext {
  return testStageContext(tasks, s3, testStageConfig(s3, BUCKET), published);
}

/** Puts `content` in the image store as task `id`'s converted disk (or uses the one stored) and runs the validate stage on it. */
async function validate(
  id: string,
  kind: TaskKind,
  content: Buffer | { stored: number },
  architecture: 'x86_64' | 'arm64' = 'x86_64',
  extraRequest: Partial<TaskDocument['request']> = {},
): Promise<TaskDocument> {
  const key = `images/${id}/disk.raw`;
  if (Buffer.isBuffer(content)) await s3.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: content }));
  const size = Buffer.isBuffer(content) ? content.length : content.stored;
  const image = { bucket: BUCKET, key, size, sha256: '00'.repeat(32) };
  const now = new Date().toISOString();
  await tasks.create({
    id, kind, accountId: '111122223333', state: 'disk-converted', statusMessage: 'Validating', progress: 90, bytesConverted: size,
    request: {
      format: 'RAW', bytes: size, manifestUrl: 'http://unused/', volumeSizeGiB: Math.max(1, Math.ceil(size / 2 ** 30)),
      ...(kind === 'import-instance' ? { instance: { instanceId: 'i-0123456789abcdef0', architecture } } : {}),
      ...extraRequest,
    },
    artifacts: { image },
    history: [{ at: now, from: null, to: 'disk-converted' }], createdAt: now, updatedAt: now,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(), version: 0,
  });
  await validateStage.handle(makeEvent(EVENT_TYPES.diskConverted, { taskId: id, accountId: '111122223333', image }, 'test'), context());
  return (await tasks.get(id))!;
}

let debian: Buffer;
let noBootloader: Buffer;

beforeAll(async () => {
  s3 = await startS3Server();
  await s3.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  tasks = SqliteTaskStore.open(':memory:');
  ws = workspace('validate-stage-');
  const root = { sizeMiB: 40, bootable: true, fs: { kind: 'ext4' as const, uuid: UUIDS.debianRoot, tree: debianTree() } };
  debian = readFileSync(makeDisk(ws, 'debian', { table: 'mbr', partitions: [root], biosBootCode: true }));
  noBootloader = readFileSync(makeDisk(ws, 'no-bootloader', { table: 'mbr', partitions: [root] }));
}, 60_000);

afterAll(async () => {
  await tasks?.close();
  await s3?.stop();
  ws?.cleanup();
});

test('a Debian system disk imported as an instance is accepted; the report is kept on the task', async () => {
  const doc = await validate('import-i-0000d001', 'import-instance', debian);
  expect(doc.state).toBe('validated');
  const report = doc.artifacts.validation!;
  expect(report).toMatchObject({
    sizeBytes: debian.length,
    partitionTable: 'mbr',
    purpose: 'system',
    os: { family: 'linux', distribution: 'debian', version: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)', location: 'partition 1' },
    kernels: [{ path: '/boot/vmlinuz-6.1.0-18-amd64', version: '6.1.0-18-amd64', architecture: 'x86_64', initramfs: '/boot/initrd.img-6.1.0-18-amd64' }],
    bootMode: 'legacy-bios',
    architecture: 'x86_64',
    filesystems: [{ type: 'ext4', partition: 1, uuid: UUIDS.debianRoot, role: 'linux-root', mountpoint: '/' }],
    verdict: { accepted: true, message: 'accepted: Debian GNU/Linux 12 (bookworm), x86_64, boots with legacy BIOS, kernel 6.1.0-18-amd64' },
  });
  expect(report.findings!.filter((f) => f.severity === 'error')).toEqual([]);
  // Read in place with ranged GETs: a few MiB of a 42 MiB disk.
  console.log(`validate read ${report.bytesRead} bytes of a ${debian.length}-byte Debian disk`);
  expect(report.bytesRead).toBeLessThan(4 * MiB);
  expect(published.filter((e) => e.type === EVENT_TYPES.validated && (e.data as { taskId: string }).taskId === doc.id)).toHaveLength(1);
}, 60_000);

test('a disk without a bootloader imported as an instance fails with the report\'s message', async () => {
  const doc = await validate('import-i-0000d002', 'import-instance', noBootloader);
  expect(doc.state).toBe('failed');
  expect(doc.statusMessage).toBe(
    'ClientError: no bootloader: the MBR has no boot code and there is no EFI system partition with \\EFI\\BOOT\\BOOTX64.EFI; install a bootloader in the guest (grub-install) and export the disk again',
  );
  expect(doc.artifacts.validation).toMatchObject({ purpose: 'system', os: { distribution: 'debian' }, bootMode: 'none', verdict: { accepted: false, message: doc.statusMessage } });
  expect(doc.artifacts.validation!.findings).toContainEqual(expect.objectContaining({ severity: 'error', code: 'no-bootloader' }));
  expect(published.some((e) => (e.data as { taskId: string }).taskId === doc.id)).toBe(false);
}, 60_000);

test('an Architecture that is not the kernel\'s fails the instance import', async () => {
  const doc = await validate('import-i-0000d003', 'import-instance', debian, 'arm64');
  expect(doc.state).toBe('failed');
  expect(doc.statusMessage).toBe('ClientError: Architecture arm64 was requested but the guest\'s kernel /boot/vmlinuz-6.1.0-18-amd64 is x86_64; request Architecture x86_64');
}, 60_000);

test('a Platform that is not the operating system found fails the import; the matching one passes', async () => {
  const image = (platform: string) => ({ importImage: { source: { bucket: 'user', key: 'disk.raw' }, architecture: 'x86_64', platform } });
  const windows = await validate('import-ami-0000d011', 'import-image', debian, 'x86_64', image('Windows') as Partial<TaskDocument['request']>);
  expect(windows.state).toBe('failed');
  expect(windows.statusMessage).toBe('ClientError: Platform Windows was requested but the disk holds Debian GNU/Linux 12 (bookworm) on partition 1; request Platform Linux, or leave Platform out');
  expect(windows.artifacts.validation!.findings).toContainEqual(expect.objectContaining({ severity: 'error', code: 'platform-mismatch' }));
  const linux = await validate('import-ami-0000d012', 'import-image', debian, 'x86_64', image('Linux') as Partial<TaskDocument['request']>);
  expect(linux.state).toBe('validated');
  // ImportInstance says Platform only for Windows.
  const instance = await validate('import-i-0000d013', 'import-instance', debian, 'x86_64', { instance: { instanceId: 'i-0123456789abcdef1', architecture: 'x86_64', platform: 'Windows' } });
  expect(instance.statusMessage).toMatch(/^ClientError: Platform Windows was requested but the disk holds Debian/);
}, 60_000);

test('a data volume is accepted whatever it holds, and the report says it is a data disk', async () => {
  const dir = ws.path('corpus');
  mkdirSync(dir);
  // The e2e tests' disk: an MBR with an ext4 partition that has /etc/os-release but no kernel or bootloader.
  const corpus = readFileSync(makeRawDisk(dir).path);
  const doc = await validate('import-vol-0000d004', 'import-volume', corpus);
  expect(doc.state).toBe('validated');
  expect(doc.artifacts.validation).toMatchObject({
    purpose: 'data',
    partitionTable: 'mbr',
    bootMode: 'none',
    filesystems: [{ type: 'ext4', partition: 1 }],
    verdict: { accepted: true, message: 'accepted: data volume, ext4 on partition 1' },
  });
  expect(doc.artifacts.validation!.findings).toContainEqual(expect.objectContaining({ severity: 'info', code: 'data-volume' }));
  expect(doc.artifacts.validation!.bytesRead).toBeLessThan(4 * MiB);

  // Random bytes: no partition table, no filesystem; still a volume's data.
  const random = await validate('import-vol-0000d005', 'import-volume', seededBytes(3 * MiB + 17, 3));
  expect(random.state).toBe('validated');
  expect(random.artifacts.validation).toMatchObject({ purpose: 'data', partitionTable: 'none', verdict: { accepted: true, message: 'accepted: data volume, no filesystem that could be identified' } });
  // The same bytes as an instance's root disk are refused.
  const refused = await validate('import-i-0000d006', 'import-instance', seededBytes(3 * MiB + 17, 3));
  expect(refused.state).toBe('failed');
  expect(refused.statusMessage).toMatch(/^ClientError: the disk \(3 MiB\) has no partition table and no filesystem at its start; export the whole system disk/);
}, 60_000);

test('inspecting a 10 GiB sparse disk in place reads less than 2 MiB from the image store', async () => {
  const GiB = 2 ** 30;
  const big = makeDisk(ws, 'big', {
    table: 'gpt',
    biosBootCode: true,
    sizeMiB: 10 * 1024,
    partitions: [{ sizeMiB: 10 * 1024 - 4, fs: { kind: 'ext4', label: 'root', uuid: UUIDS.debianRoot, tree: debianTree() } }],
  });
  const id = 'import-i-0000d007';
  // The object is stored as s3rver keeps objects, a file, put there sparse: uploading 10 GiB of
  // zeros would only measure the upload. s3rver serves ranged GETs from that file.
  const key = `images/${id}/disk.raw`;
  await s3.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'placeholder' }));
  renameSync(big, s3.objectFile(BUCKET, key));
  const before = s3.bytesSent();
  const doc = await validate(id, 'import-instance', { stored: 10 * GiB });
  const sent = s3.bytesSent() - before;
  const report = doc.artifacts.validation!;
  const bytesRead = report.bytesRead!;
  console.log(
    `validating a 10 GiB sparse disk in the image store: the inspector read ${bytesRead} bytes (${(bytesRead / MiB).toFixed(2)} MiB); ` +
      `the image store sent ${sent} bytes (${(sent / MiB).toFixed(2)} MiB, HTTP headers included)`,
  );
  expect(doc.state).toBe('validated');
  expect(report.verdict!.message).toBe('accepted: Debian GNU/Linux 12 (bookworm), x86_64, boots with legacy BIOS, kernel 6.1.0-18-amd64');
  expect(report.sizeBytes).toBe(10 * GiB);
  expect(sent).toBeGreaterThanOrEqual(bytesRead);
  expect(sent).toBeLessThan(2 * MiB);
}, 120_000);

test('a partition image (bare ext4) is refused without a kernel, accepted with its own kernel or with KernelId on the request', async () => {
  const tree = debianTree();
  const withKernel = readFileSync(makeFilesystem(ws, 'bare-with-kernel', 24, { kind: 'ext4', uuid: UUIDS.debianRoot, tree }));
  const withoutBoot = Object.fromEntries(Object.entries(tree).filter(([path]) => !path.startsWith('boot/')));
  const withoutKernel = readFileSync(makeFilesystem(ws, 'bare-without-kernel', 24, { kind: 'ext4', label: 'rootfs', uuid: UUIDS.debianRoot, tree: withoutBoot }));
  const image = (extra: Record<string, string> = {}) => ({ importImage: { source: { bucket: 'user', key: 'disk.raw' }, architecture: 'x86_64', ...extra } });

  const own = await validate('import-ami-0000d008', 'import-image', withKernel, 'x86_64', image());
  expect([own.state, own.artifacts.validation!.verdict!.message]).toEqual(['validated', 'accepted: Debian GNU/Linux 12 (bookworm), x86_64, kernel /boot/vmlinuz-6.1.0-18-amd64']);

  const none = await validate('import-ami-0000d009', 'import-image', withoutKernel, 'x86_64', image());
  expect(none.state).toBe('failed');
  expect(none.statusMessage).toBe(
    'ClientError: the image is a bare ext4 filesystem (label rootfs) with no partition table (a partition image) and no kernel in /boot; ' +
      'give KernelId and RamdiskId to boot it with an associated kernel and ramdisk, or import the whole disk with its partition table',
  );

  // A bundle's registration (or an import) that names a kernel and ramdisk: the filesystem needs none of its own.
  const associated = await validate('import-ami-0000d010', 'import-image', withoutKernel, 'x86_64', image({ kernelId: 'aki-0123456789abcdef0', ramdiskId: 'ari-0123456789abcdef0' }));
  expect([associated.state, associated.artifacts.validation!.verdict!.message]).toEqual(['validated', 'accepted: Debian GNU/Linux 12 (bookworm), boots with the associated kernel and ramdisk']);
}, 60_000);
