import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { existsSync, readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { PassThrough } from 'stream';
import { checkCommand, convertCommand, infoCommand, type CommandOutput } from '../../../cli/toolkit-commands';
import { makeRawDisk, qemuImg, tempDir, type MadeDisk } from '../../helpers/disk-corpus';
import { startS3Server, type RunningS3Server } from '../../helpers/s3-server';

function capture(): CommandOutput & { text(): { stdout: string; stderr: string } } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out = { stdout: '', stderr: '' };
  stdout.on('data', (chunk) => (out.stdout += chunk));
  stderr.on('data', (chunk) => (out.stderr += chunk));
  return { stdout, stderr, text: () => out };
}

describe('toolkit commands', () => {
  let dir: string;
  let disk: MadeDisk;
  let server: RunningS3Server;
  const savedEnv = { ...process.env };

  beforeAll(async () => {
    dir = tempDir();
    disk = makeRawDisk(dir);
    server = await startS3Server();
    await server.s3.send(new CreateBucketCommand({ Bucket: 'cli-bucket' }));
    Object.assign(process.env, {
      IMAGING_S3_ENDPOINT: server.endpoint,
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      AWS_REGION: server.region,
    });
  });
  afterAll(async () => {
    process.env = savedEnv;
    await server.stop();
  });

  it('info prints the format and sizes, as text and as JSON', async () => {
    const text = capture();
    expect(await infoCommand(disk.path, { out: text })).toBe(0);
    expect(text.text().stdout).toMatch(/format:\s+RAW/);
    expect(text.text().stdout).toContain(`(${disk.size} bytes)`);

    const json = capture();
    expect(await infoCommand(disk.path, { json: true, out: json })).toBe(0);
    expect(JSON.parse(json.text().stdout)).toMatchObject({ name: 'disk.raw', format: 'raw', virtualSize: disk.size, fileSize: disk.size });
  });

  it('check reads the whole image and reports the partition table', async () => {
    const out = capture();
    expect(await checkCommand(disk.path, { out })).toBe(0);
    expect(out.text().stdout).toMatch(/partitions:\s+MBR/);
    expect(out.text().stdout).toMatch(/1: start 1048576, 32\.0 MiB .*type 0x83/);
    expect(out.text().stdout).toMatch(/^ok:/m);
  });

  it('convert writes a file and an S3 object, byte for byte', async () => {
    const out = capture();
    const local = join(dir, 'copy.img');
    expect(await convertCommand(disk.path, local, { progress: true, out })).toBe(0);
    expect(readFileSync(local).equals(readFileSync(disk.path))).toBe(true);
    expect(out.text().stdout).toMatch(/converted disk\.raw \(RAW, .*\) to .*copy\.img \(RAW/);

    expect(await convertCommand(local, 's3://cli-bucket/images/copy.raw', { out: capture() })).toBe(0);
    const object = await server.s3.send(new GetObjectCommand({ Bucket: 'cli-bucket', Key: 'images/copy.raw' }));
    expect(Buffer.from(await object.Body!.transformToByteArray()).equals(readFileSync(disk.path))).toBe(true);

    // And back from S3 to a file.
    const back = join(dir, 'back.raw');
    expect(await convertCommand('s3://cli-bucket/images/copy.raw', back, { out: capture() })).toBe(0);
    expect(readFileSync(back).equals(readFileSync(disk.path))).toBe(true);
  });

  it('info reads S3 objects', async () => {
    await server.s3.send(new PutObjectCommand({ Bucket: 'cli-bucket', Key: 'tiny.raw', Body: Buffer.alloc(1000, 1) }));
    const out = capture();
    expect(await infoCommand('s3://cli-bucket/tiny.raw', { json: true, out })).toBe(0);
    expect(JSON.parse(out.text().stdout)).toMatchObject({ name: 's3://cli-bucket/tiny.raw', virtualSize: 1000 });
  });

  it('prints one error line, no stack, and a non-zero code', async () => {
    const missing = capture();
    expect(await infoCommand(join(dir, 'nope.vmdk'), { out: missing })).toBe(1);
    expect(missing.text().stderr).toMatch(/^error: no such file: .*nope\.vmdk\n$/);

    const missingObject = capture();
    expect(await checkCommand('s3://cli-bucket/absent.raw', { out: missingObject })).toBe(1);
    expect(missingObject.text().stderr).toMatch(/^error: .*not found/);

    const empty = join(dir, 'empty.raw');
    writeFileSync(empty, Buffer.alloc(0));
    const refused = capture();
    expect(await checkCommand(empty, { out: refused })).toBe(1);
    expect(refused.text().stderr).toBe(`error: empty.raw is empty (0 bytes) [check: image-empty]\n`);
    // A refused image is refused before the output is created.
    const refusedConvert = capture();
    expect(await convertCommand(empty, join(dir, 'from-empty.vmdk'), { out: refusedConvert })).toBe(1);
    expect(refusedConvert.text().stderr).toBe(`error: empty.raw is empty (0 bytes) [check: image-empty]\n`);
    expect(existsSync(join(dir, 'from-empty.vmdk'))).toBe(false);

    const usage = capture();
    expect(await convertCommand(disk.path, join(dir, 'x.out'), { outputFormat: 'qcow9' as never, out: usage })).toBe(2);
    expect(usage.text().stderr).toMatch(/^error: unknown output format qcow9/);

    const ontoItself = capture();
    expect(await convertCommand(disk.path, join(dir, '.', 'disk.raw'), { out: ontoItself })).toBe(2);
    expect(ontoItself.text().stderr).toBe('error: the output would overwrite the input\n');
    expect(readFileSync(disk.path).length).toBe(disk.size);
  });

  it('check refuses a qcow2 with a backing file', async () => {
    const base = join(dir, 'base.qcow2');
    const overlay = join(dir, 'overlay.qcow2');
    qemuImg('create', '-f', 'qcow2', base, '64M');
    qemuImg('create', '-f', 'qcow2', '-F', 'qcow2', '-b', base, overlay);
    const out = capture();
    expect(await checkCommand(overlay, { out })).toBe(1);
    expect(out.text().stderr).toMatch(/^error: .*backing.*\[check: qcow2\.backing-file\]\n$/i);
  });
});
