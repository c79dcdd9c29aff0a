/**
 * The boot-check stage (dynamic validation) on real parts: s3rver holds the converted disk, an
 * SQLite store the task, qemu-system-x86_64 boots the disk (TCG, bounded by the stage's time
 * limit). A task that asked for a boot check (BootCheck=true) and boots to its marker moves on
 * with the verdict and the last console lines kept; a disk whose boot sector is empty fails the
 * task with "no bootloader"; a task that did not ask, or a data volume, passes straight through
 * without a guest being started.
 */
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { readFileSync } from 'fs';
import type { CloudEvent } from 'cloudevents';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import type { BootCheckRequest, TaskDocument, TaskKind } from '../../tasks/task';
import { makeEvent } from '../../events/make-event';
import { EVENT_TYPES } from '../../events/types';
import { bootCheckStage } from '../../functions/boot-check/boot-check-stage';
import type { BootCheckConfig, StageContext } from '../../functions/stage';
import { startS3Server, type RunningS3Server } from '../helpers/s3-server';
import { testStageConfig, testStageContext } from '../helpers/stage-config';
import { makeDisk, workspace, type Workspace } from '../helpers/guest-images';
import { BOOT_MARKER, makeLinuxBootDisk } from '../helpers/boot-disk';

const BUCKET = 'boot-check-images';
const ON_REQUEST: BootCheckConfig = { mode: 'on-request', timeoutMs: 240_000, accelerator: 'tcg', memoryMiB: 256 };
let s3: RunningS3Server;
let tasks: SqliteTaskStore;
let ws: Workspace;
const published: CloudEvent<unknown>[] = [];
let linux: Buffer;
let noBootCode: Buffer;

function context(bootCheck: BootCheckConfig): StageContext {
  return testStageContext(tasks, s3, testStageConfig(s3, BUCKET, { bootCheck }), published);
}

/** Puts `content` in the image store as task `id`'s converted disk, validated, and runs the boot-check stage. */
async function bootCheckTask(id: string, kind: TaskKind, content: Buffer, bootCheck: BootCheckRequest | undefined, config = ON_REQUEST): Promise<TaskDocument> {
  const key = `images/${id}/disk.raw`;
  await s3.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: content }));
  const image = { bucket: BUCKET, key, size: content.length, sha256: '00'.repeat(32) };
  const now = new Date().toISOString();
  await tasks.create({
    id, kind, accountId: '111122223333', state: 'validated', statusMessage: 'Booting', progress: 95, bytesConverted: content.length,
    request: {
      format: 'RAW', bytes: content.length, manifestUrl: 'http://unused/', volumeSizeGiB: 1,
      ...(kind === 'import-instance' ? { instance: { instanceId: 'i-0123456789abcdef0', architecture: 'x86_64' as const } } : {}),
      ...(kind === 'import-image' ? { importImage: { source: { bucket: 'user', key: 'disk.raw' }, architecture: 'x86_64' } } : {}),
      ...(bootCheck ? { bootCheck } : {}),
    },
    artifacts: { image },
    history: [{ at: now, from: null, to: 'validated' }], createdAt: now, updatedAt: now,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(), version: 0,
  });
  await bootCheckStage.handle(makeEvent(EVENT_TYPES.validated, { taskId: id, accountId: '111122223333' }, 'test'), context(config));
  return (await tasks.get(id))!;
}

const emitted = (id: string) => published.filter((e) => e.type === EVENT_TYPES.bootChecked && (e.data as { taskId: string }).taskId === id);

beforeAll(async () => {
  s3 = await startS3Server();
  await s3.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  tasks = SqliteTaskStore.open(':memory:');
  ws = workspace('boot-check-stage-');
  linux = readFileSync(makeLinuxBootDisk(ws));
  // A partitioned disk whose MBR boot code area is empty (no 0x55AA either: nothing was installed).
  noBootCode = readFileSync(makeDisk(ws, 'no-boot-code', { table: 'mbr', partitions: [{ sizeMiB: 4, bootable: true }] }));
  const sector = noBootCode.subarray(0, 512);
  sector.fill(0, 0, 446);
  sector[510] = 0;
  sector[511] = 0;
}, 120_000);

afterAll(async () => {
  await tasks?.close();
  await s3?.stop();
  ws?.cleanup();
});

test('an image import that asked for a boot check boots to its marker: the verdict and the console are kept', async () => {
  const doc = await bootCheckTask('import-ami-0000b001', 'import-image', linux, { marker: BOOT_MARKER });
  console.log(`boot-check stage: ${doc.artifacts.bootCheck?.message}`);
  expect(doc.state).toBe('boot-checked');
  expect(doc.progress).toBe(98);
  expect(doc.artifacts.bootCheck).toMatchObject({ booted: true, reached: 'marker', accelerator: 'tcg' });
  expect(doc.artifacts.bootCheck!.message).toMatch(/^booted to the marker "IMAGING-BOOT-CHECK: init reached" in \d+\.\d s$/);
  expect(doc.artifacts.bootCheck!.console).toHaveLength(20);
  expect(doc.artifacts.bootCheck!.console).toContain(BOOT_MARKER);
  expect(emitted(doc.id)).toHaveLength(1);
}, 300_000);

test('an instance import whose disk has an empty boot sector fails with "no bootloader"', async () => {
  const doc = await bootCheckTask('import-i-0000b002', 'import-instance', noBootCode, {});
  expect(doc.state).toBe('failed');
  expect(doc.statusMessage).toBe(
    'ClientError: the boot check failed: no bootloader: the firmware found no boot signature in the first sector (the disk has no BIOS boot code); ' +
      'install a bootloader (grub-install) and export the disk again (the guest reached the firmware stage; its last console lines are kept on the task)',
  );
  expect(doc.artifacts.bootCheck).toMatchObject({ booted: false, reached: 'firmware' });
  expect(emitted(doc.id)).toHaveLength(0);
}, 120_000);

test('no guest is started for a task that did not ask, a data volume, or when the operator turned boot checks off', async () => {
  const started = Date.now();
  const notAsked = await bootCheckTask('import-ami-0000b003', 'import-image', noBootCode, undefined);
  const volume = await bootCheckTask('import-vol-0000b004', 'import-volume', noBootCode, {}, { ...ON_REQUEST, mode: 'always' });
  const off = await bootCheckTask('import-i-0000b005', 'import-instance', noBootCode, {}, { ...ON_REQUEST, mode: 'off' });
  for (const doc of [notAsked, volume, off]) {
    expect([doc.id, doc.state, doc.artifacts.bootCheck]).toEqual([doc.id, 'boot-checked', undefined]);
    expect(emitted(doc.id)).toHaveLength(1);
  }
  // `always` boots an image import that did not ask: the empty boot sector fails it.
  const always = await bootCheckTask('import-ami-0000b006', 'import-image', noBootCode, undefined, { ...ON_REQUEST, mode: 'always' });
  expect(always.state).toBe('failed');
  expect(always.statusMessage).toMatch(/^ClientError: the boot check failed: no bootloader: /);
  console.log(`three pass-throughs and one failed boot took ${Date.now() - started} ms`);
}, 120_000);
