import { execFileSync } from 'child_process';
import { closeSync, openSync, readSync, writeFileSync, writeSync } from 'fs';
import { join } from 'path';
import { detectPartitionTable, PARTITION_HEAD_BYTES } from '../../../toolkit/inspect/partitions';
import { makeRawDisk, tempDir } from '../../helpers/disk-corpus';

const MiB = 1024 * 1024;

function blankDisk(dir: string, name: string, size = 64 * MiB): string {
  const path = join(dir, name);
  writeFileSync(path, Buffer.alloc(0));
  execFileSync('truncate', ['-s', String(size), path]);
  return path;
}

function sfdisk(path: string, script: string): void {
  execFileSync('sfdisk', ['--quiet', path], { input: script });
}

function readHead(path: string, length = PARTITION_HEAD_BYTES): Buffer {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(length);
    readSync(fd, head, 0, length, 0);
    return head;
  } finally {
    closeSync(fd);
  }
}

function corrupt(path: string, offset: number): void {
  const fd = openSync(path, 'r+');
  const byte = Buffer.alloc(1);
  readSync(fd, byte, 0, 1, offset);
  byte[0] ^= 0xff;
  writeSync(fd, byte, 0, 1, offset);
  closeSync(fd);
}

describe('detectPartitionTable', () => {
  const dir = tempDir();

  it('reads an MBR made by sfdisk: starts, sizes, types and the boot flag', () => {
    const path = blankDisk(dir, 'mbr.raw');
    sfdisk(path, 'label: dos\nstart=2048, size=40960, type=83, bootable\nstart=43008, size=20480, type=82\n');
    expect(detectPartitionTable(readHead(path))).toEqual({
      type: 'mbr',
      partitions: [
        { index: 1, start: 2048 * 512, size: 40960 * 512, type: '0x83', bootable: true },
        { index: 2, start: 43008 * 512, size: 20480 * 512, type: '0x82', bootable: false },
      ],
    });
  });

  it('reads the test corpus disk (MBR, one Linux partition at 1 MiB)', () => {
    const disk = makeRawDisk(tempDir());
    const table = detectPartitionTable(readHead(disk.path));
    expect(table.type).toBe('mbr');
    expect(table.partitions).toEqual([{ index: 1, start: MiB, size: 32 * MiB, type: '0x83', bootable: false }]);
  });

  it('reads a GPT made by sfdisk, with type GUIDs and names', () => {
    const path = blankDisk(dir, 'gpt.raw');
    sfdisk(
      path,
      'label: gpt\n' +
        'start=2048, size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System"\n' +
        'start=10240, size=40960, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"\n',
    );
    expect(detectPartitionTable(readHead(path))).toEqual({
      type: 'gpt',
      partitions: [
        { index: 1, start: 2048 * 512, size: 8192 * 512, type: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b', name: 'EFI System' },
        { index: 2, start: 10240 * 512, size: 40960 * 512, type: '0fc63daf-8483-4772-8e79-3d69d8477de4', name: 'root' },
      ],
    });
  });

  it('refuses to trust a GPT whose header or entry checksum is wrong', () => {
    const headerDamaged = blankDisk(dir, 'gpt-bad-header.raw');
    sfdisk(headerDamaged, 'label: gpt\nstart=2048, size=8192\n');
    corrupt(headerDamaged, 512 + 40); // first usable LBA, covered by the header CRC
    const byHeader = detectPartitionTable(readHead(headerDamaged));
    expect(byHeader).toMatchObject({ type: 'gpt', partitions: [] });
    expect(byHeader.warnings?.join()).toMatch(/header checksum/);

    const entriesDamaged = blankDisk(dir, 'gpt-bad-entries.raw');
    sfdisk(entriesDamaged, 'label: gpt\nstart=2048, size=8192\n');
    corrupt(entriesDamaged, 1024 + 33); // first partition's start LBA
    const byEntries = detectPartitionTable(readHead(entriesDamaged));
    expect(byEntries).toMatchObject({ type: 'gpt', partitions: [] });
    expect(byEntries.warnings?.join()).toMatch(/entries checksum/);
  });

  it('finds no table on a blank disk, a bare filesystem, or a short head', () => {
    expect(detectPartitionTable(Buffer.alloc(PARTITION_HEAD_BYTES))).toEqual({ type: 'none', partitions: [] });
    const fs = blankDisk(dir, 'bare.ext4', 16 * MiB);
    execFileSync('mkfs.ext4', ['-q', '-F', fs], { stdio: 'pipe' });
    expect(detectPartitionTable(readHead(fs)).type).toBe('none');
    expect(detectPartitionTable(Buffer.alloc(100)).type).toBe('none');
    // A boot sector with 0x55AA but boot code where entries would be (a FAT/NTFS volume).
    const bootSector = Buffer.alloc(512, 0x4e);
    bootSector[510] = 0x55;
    bootSector[511] = 0xaa;
    expect(detectPartitionTable(bootSector).type).toBe('none');
  });

  it('reads an MBR from a head of just one sector', () => {
    const path = blankDisk(dir, 'mbr-short.raw');
    sfdisk(path, 'label: dos\nstart=2048, size=4096, type=7\n');
    expect(detectPartitionTable(readHead(path, 512))).toEqual({
      type: 'mbr',
      partitions: [{ index: 1, start: 2048 * 512, size: 4096 * 512, type: '0x07', bootable: false }],
    });
  });
});
