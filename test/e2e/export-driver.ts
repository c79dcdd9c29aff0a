/**
 * Shared by the export suites: the guest disk they import and export, the check that an
 * exported file is what it should be (qemu-img accepts it and converts it back to the imported
 * bytes exactly), and waiting for export tasks through @aws-sdk/client-ec2.
 */
import { execFileSync } from 'child_process';
import { readFileSync, statSync } from 'fs';
import { join } from 'path';
import { DescribeExportImageTasksCommand, DescribeExportTasksCommand } from '@aws-sdk/client-ec2';
import { qemuImg, qemuToRaw } from '../helpers/disk-corpus';
import { sdkClient, type Ec2Credentials } from '../helpers/ec2-clients';
import { UUIDS, debianTree, makeDisk } from '../helpers/guest-images';
import { sha256 } from './import-driver';

/**
 * A system disk validation accepts, made with sfdisk + mkfs.ext4 -d: MBR with GRUB-like boot
 * code and one bootable partition holding a Debian-shaped root filesystem (x86_64 kernel).
 * Returns the raw file and its streamOptimized VMDK, as a user would upload it.
 */
export function makeGuestDisk(dir: string, sizeMiB = 40): { raw: string; vmdk: string; size: number } {
  const raw = makeDisk({ dir, path: (name) => join(dir, name), cleanup: () => undefined }, 'guest', {
    table: 'mbr',
    biosBootCode: true,
    partitions: [{ sizeMiB, bootable: true, fs: { kind: 'ext4', uuid: UUIDS.debianRoot, tree: debianTree() } }],
  });
  const vmdk = join(dir, 'guest.vmdk');
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', raw, vmdk]);
  return { raw, vmdk, size: statSync(raw).size };
}

/**
 * qemu-img accepts the file (`check`; VHD has no checks in qemu-img, so `info` must open it and
 * report the disk's size) and its `convert -O raw` is `reference` byte for byte.
 */
export function expectSameDisk(path: string, format: 'vmdk' | 'vpc' | 'raw', reference: Buffer): void {
  if (format === 'vpc') expect(JSON.parse(qemuImg('info', '--output=json', '-f', format, path))['virtual-size']).toBe(reference.length);
  else if (format !== 'raw') qemuImg('check', '-f', format, path);
  const back = qemuToRaw(path, `${path}.back.raw`, format);
  expect(back.length).toBe(reference.length);
  expect(sha256(back)).toBe(sha256(reference));
}

/** The VHD subformat qemu-img reports, from the footer's disk type (offset 60 of the last 512 bytes). */
export function vhdDiskType(path: string): 'fixed' | 'dynamic' | 'other' {
  const file = readFileSync(path);
  const type = file.readUInt32BE(file.length - 512 + 60);
  return type === 2 ? 'fixed' : type === 3 ? 'dynamic' : 'other';
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls with @aws-sdk/client-ec2 (a python process per boto3 poll costs seconds on a loaded
 * machine) until an export task leaves active/cancelling (CreateInstanceExportTask's) or
 * active/deleting (ExportImage's); resolves to the SDK's last answer.
 */
export async function waitForExportEnd(endpoint: string, creds: Ec2Credentials, taskId: string, timeoutMs = 120_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  const ec2 = sdkClient(endpoint, creds);
  try {
    for (;;) {
      const task: any = taskId.startsWith('export-ami-')
        ? (await ec2.send(new DescribeExportImageTasksCommand({ ExportImageTaskIds: [taskId] }))).ExportImageTasks![0]
        : (await ec2.send(new DescribeExportTasksCommand({ ExportTaskIds: [taskId] }))).ExportTasks![0];
      const state = task.Status ?? task.State;
      if (!['active', 'cancelling', 'deleting'].includes(state)) return task;
      if (Date.now() > deadline) throw new Error(`export ${taskId} still ${state} after ${timeoutMs} ms`);
      await sleep(250);
    }
  } finally {
    ec2.destroy();
  }
}
