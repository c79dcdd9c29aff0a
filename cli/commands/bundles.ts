/**
 * The euca2ools bundle tools as `imaging` commands: bundle-image and unbundle (local), upload-bundle
 * (S3), register-image and describe-images (EC2), and the operator's side of bundles: cert
 * add|list|delete (an account's signing certificates, in the task store) and cloud-cert (the
 * certificate bundlers encrypt for).
 */
import { readFileSync, statSync } from 'fs';
import { basename, dirname, join } from 'path';
import type { Command } from 'commander';
import type { ClientContext, ClientFlags } from '../client-options';
import type { Ec2Client } from '../ec2-client';
import { findAccount, withStore, withStoreFlags } from './accounts';

const MiB = 1024 * 1024;
const print = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);

export interface ImageView {
  imageId: string;
  state: string;
  stateReason?: string;
  imageType: string;
  name?: string;
  description?: string;
  architecture?: string;
  imageLocation?: string;
  rootDeviceType?: string;
  rootDeviceName?: string;
  virtualizationType?: string;
  kernelId?: string;
  ramdiskId?: string;
  /** Ours (not EC2's): disk or partition, and the image's bytes in the image store. */
  layout?: string;
  imageStoreLocation?: string;
  imageSha256?: string;
  /** The root device's snapshot, for a volume-backed image (ImportImage, CopyImage). */
  rootSnapshotId?: string;
}

const str = (v: unknown) => (v === undefined || v === '' ? undefined : String(v));

export function imageView(item: Record<string, any>): ImageView {
  return {
    imageId: String(item.imageId),
    state: String(item.imageState),
    stateReason: str(item.stateReason?.message),
    imageType: String(item.imageType ?? 'machine'),
    name: str(item.name),
    description: str(item.description),
    architecture: str(item.architecture),
    imageLocation: str(item.imageLocation),
    rootDeviceType: str(item.rootDeviceType),
    rootDeviceName: str(item.rootDeviceName),
    virtualizationType: str(item.virtualizationType),
    kernelId: str(item.kernelId),
    ramdiskId: str(item.ramdiskId),
    layout: str(item.layout),
    imageStoreLocation: str(item.imageStoreLocation),
    imageSha256: str(item.imageSha256),
    rootSnapshotId: str(((item.blockDeviceMapping?.item ?? []) as Record<string, any>[]).find((m) => m.deviceName === item.rootDeviceName)?.ebs?.snapshotId),
  };
}

export async function describeImages(ec2: Ec2Client, ids: string[]): Promise<ImageView[]> {
  const params: Record<string, string> = {};
  ids.forEach((id, i) => (params[`ImageId.${i + 1}`] = id));
  const response = await ec2.call('DescribeImages', params);
  return ((response.imagesSet?.item ?? []) as Record<string, any>[]).map(imageView);
}

export function formatImage(i: ImageView): string {
  const lines = [`${i.imageId}  ${i.state}  ${i.imageType}${i.name ? `  ${i.name}` : ''}`];
  const field = (name: string, value: unknown) => value !== undefined && lines.push(`  ${name.padEnd(16)}${value}`);
  field('reason', i.stateReason);
  field('location', i.imageLocation);
  field('kernel', i.kernelId);
  field('ramdisk', i.ramdiskId);
  field('layout', i.layout);
  field('root device', i.rootDeviceName && `${i.rootDeviceName} (${i.rootDeviceType}, ${i.virtualizationType})`);
  field('root snapshot', i.rootSnapshotId);
  field('image store', i.imageStoreLocation);
  field('sha256', i.imageSha256);
  return lines.join('\n');
}

/** Follows a registration until the image is available or failed, with a bar on stderr when asked. */
export async function waitForImage(ec2: Ec2Client, imageId: string, options: { progress: boolean; pollMs?: number }): Promise<ImageView> {
  const { Presets, SingleBar } = await import('cli-progress');
  const bar = options.progress ? new SingleBar({ format: 'registering |{bar}| {state}', hideCursor: true }, Presets.shades_classic) : undefined;
  bar?.start(2, 0, { state: 'pending' });
  try {
    for (;;) {
      const [image] = await describeImages(ec2, [imageId]);
      if (image.state !== 'pending') {
        bar?.update(2, { state: image.state });
        return image;
      }
      bar?.update(1, { state: image.state });
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1000));
    }
  } finally {
    bar?.stop();
  }
}

/** The manifest and the parts it names, from a bundle directory. */
function bundleFiles(manifestPath: string): string[] {
  const xml = readFileSync(manifestPath, 'utf8');
  const names = [...xml.matchAll(/<filename>([^<]+)<\/filename>/g)].map((m) => m[1]);
  if (names.length === 0) throw new Error(`${manifestPath} names no parts`);
  return [...names.map((n) => join(dirname(manifestPath), n)), manifestPath];
}

/** Uploads the parts then the manifest (so a manifest never names a part not there yet); parts already there with the same size are skipped. */
export async function uploadBundle(ctx: ClientContext, manifestPath: string, o: { bucket: string; prefix: string; progress: boolean }): Promise<string> {
  const { CreateBucketCommand, HeadBucketCommand, HeadObjectCommand, PutObjectCommand } = await import('@aws-sdk/client-s3');
  await ctx.s3.send(new HeadBucketCommand({ Bucket: o.bucket })).catch(async () => ctx.s3.send(new CreateBucketCommand({ Bucket: o.bucket })));
  const files = bundleFiles(manifestPath);
  const total = files.reduce((n, f) => n + statSync(f).size, 0);
  const { Presets, SingleBar } = await import('cli-progress');
  const bar = o.progress ? new SingleBar({ format: 'uploading |{bar}| {percentage}% {value}/{total} MiB', stopOnComplete: true }, Presets.shades_classic) : undefined;
  bar?.start(Math.ceil(total / MiB), 0);
  let done = 0;
  try {
    for (const file of files) {
      const key = `${o.prefix}${basename(file)}`;
      const size = statSync(file).size;
      const there = await ctx.s3.send(new HeadObjectCommand({ Bucket: o.bucket, Key: key })).then((h) => Number(h.ContentLength), () => -1);
      if (there !== size || file === manifestPath) await ctx.s3.send(new PutObjectCommand({ Bucket: o.bucket, Key: key, Body: readFileSync(file) }));
      done += size;
      bar?.update(Math.floor(done / MiB));
    }
  } finally {
    bar?.stop();
  }
  return `${o.bucket}/${o.prefix}${basename(manifestPath)}`;
}

export interface RegisterImageFlags {
  name: string;
  description?: string;
  architecture?: string;
  kernelId?: string;
  ramdiskId?: string;
  rootDeviceName?: string;
  virtualizationType?: string;
  /** DEVICE=VIRTUAL pairs, e.g. /dev/sdb=ephemeral0. */
  blockDeviceMapping?: string[];
}

export async function registerImage(ec2: Ec2Client, location: string, o: RegisterImageFlags): Promise<string> {
  const params: Record<string, string | undefined> = {
    ImageLocation: location, Name: o.name, Description: o.description, Architecture: o.architecture, KernelId: o.kernelId,
    RamdiskId: o.ramdiskId, RootDeviceName: o.rootDeviceName, VirtualizationType: o.virtualizationType,
  };
  (o.blockDeviceMapping ?? []).forEach((pair, i) => {
    const [device, virtual] = pair.split('=');
    params[`BlockDeviceMapping.${i + 1}.DeviceName`] = device;
    params[`BlockDeviceMapping.${i + 1}.VirtualName`] = virtual;
  });
  const response = await ec2.call('RegisterImage', params);
  return String(response.imageId);
}

export function registerBundleCommands(
  program: Command,
  fail: (err: unknown) => never,
  withClientFlags: (command: Command) => Command,
  clientContext: (flags: ClientFlags) => Promise<ClientContext>,
): void {
  program
    .command('bundle-image <file>')
    .description('bundle a disk, kernel or ramdisk image as euca-bundle-image does: tar, gzip, AES-128-CBC, parts, a signed manifest')
    .requiredOption('--cloud-cert <pem>', 'the cloud\'s certificate (`imaging cloud-cert`): the bundle\'s key is encrypted for it')
    .option('--cert <pem>', 'your certificate (the user_* key fields) [default: the cloud certificate]')
    .option('--private-key <pem>', 'your private key, to sign the manifest (register its certificate with `imaging cert add`) [default: UNSIGNED]')
    .option('-d, --destination <dir>', 'directory the parts and the manifest are written to', '.')
    .option('--prefix <name>', 'name of the parts and the manifest [default: the file\'s name]')
    .option('--part-size <MiB>', 'part size in MiB', (v) => Number(v), 10)
    .option('--type <type>', 'machine, kernel or ramdisk', 'machine')
    .option('--architecture <arch>', 'i386, x86_64 or arm64', 'x86_64')
    .option('--kernel-id <id>', 'kernel to record in the manifest')
    .option('--ramdisk-id <id>', 'ramdisk to record in the manifest')
    .option('--user <account>', 'your account id (the manifest\'s <user>)')
    .option('--no-progress', 'no progress bar')
    .action(async (file: string, opts) => {
      try {
        if (!['machine', 'kernel', 'ramdisk'].includes(opts.type)) throw new Error(`--type must be machine, kernel or ramdisk, not ${opts.type}`);
        if (!(opts.partSize > 0)) throw new Error('--part-size must be a positive number of MiB');
        const { bundleImageFile } = await import('./bundle-files');
        const made = await bundleImageFile(file, { ...opts, partSizeMiB: opts.partSize, progress: opts.progress && process.stderr.isTTY === true });
        print(`${made.manifestPath}\t${made.parts} parts\t${made.bundledSize} bytes`);
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('unbundle <manifest>')
    .description('unpack a bundle locally with every check the service makes (part SHA-1s, tar SHA-1, size; the signature with --cert)')
    .requiredOption('-k, --private-key <pem>', 'a private key for the bundle\'s key: the cloud\'s, or yours (user_* fields)')
    .option('--cert <pem>', 'verify the manifest\'s signature against this certificate')
    .option('-s, --source <dir>', 'directory of the parts [default: the manifest\'s]')
    .option('-d, --destination <dir>', 'directory the image is written to', '.')
    .option('--no-progress', 'no progress bar')
    .action(async (manifest: string, opts) => {
      try {
        const { unbundleFiles } = await import('./bundle-files');
        const out = await unbundleFiles(manifest, { ...opts, progress: opts.progress && process.stderr.isTTY === true });
        print(`${out.path}\t${out.size} bytes\tsignature ${out.signature}`);
      } catch (err) {
        fail(err);
      }
    });

  withClientFlags(program.command('upload-bundle <manifest>').description('upload a bundle\'s parts, then its manifest, to a bucket'))
    .requiredOption('-b, --bucket <bucket>', 'bucket (created when missing)')
    .option('--prefix <prefix>', 'key prefix, e.g. bundles/', '')
    .option('--no-progress', 'no progress bar')
    .action(async (manifest: string, opts) => {
      try {
        const ctx = await clientContext(opts);
        print(await uploadBundle(ctx, manifest, { bucket: opts.bucket, prefix: opts.prefix, progress: opts.progress && process.stderr.isTTY === true }));
      } catch (err) {
        fail(err);
      }
    });

  withClientFlags(program.command('register-image <location>').description('RegisterImage of an uploaded bundle (bucket/prefix.manifest.xml)'))
    .requiredOption('-n, --name <name>', 'the image\'s name')
    .option('--description <text>')
    .option('--architecture <arch>', 'i386, x86_64 or arm64 [default: the manifest\'s]')
    .option('--kernel-id <id>', 'kernel image (eki-) a machine image boots with')
    .option('--ramdisk-id <id>', 'ramdisk image (eri-)')
    .option('--root-device-name <dev>', 'root device [default /dev/sda1]')
    .option('--virtualization-type <type>', 'paravirtual or hvm [default: paravirtual with a kernel, else hvm]')
    .option('--block-device-mapping <dev=virtual...>', 'e.g. /dev/sdb=ephemeral0')
    .option('--wait', 'follow the registration until the image is available or failed (exit 1 if failed)')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print the image as JSON (with --wait)')
    .action(async (location: string, opts) => {
      try {
        const ctx = await clientContext(opts);
        const imageId = await registerImage(ctx.ec2, location, opts);
        if (!opts.wait) {
          print(imageId);
          return;
        }
        process.stderr.write(`${imageId}\n`);
        const image = await waitForImage(ctx.ec2, imageId, { progress: opts.progress && !opts.json && process.stderr.isTTY === true });
        print(opts.json ? JSON.stringify(image, null, 2) : formatImage(image));
        if (image.state !== 'available') process.exitCode = 1;
      } catch (err) {
        fail(err);
      }
    });

  withClientFlags(program.command('copy-image <source-image-id>').description('CopyImage: an image from a bundle (emi-) becomes a volume-backed image (ami-) with a snapshot of the same bytes'))
    .requiredOption('-n, --name <name>', 'the new image\'s name')
    .option('--description <text>')
    .option('--client-token <token>', 'makes the call idempotent')
    .option('--copy-image-tags', 'give the new image the source\'s tags')
    .option('--json', 'print the new image as JSON')
    .action(async (source: string, opts) => {
      try {
        const ctx = await clientContext(opts);
        const response = await ctx.ec2.call('CopyImage', {
          SourceImageId: source, SourceRegion: ctx.region, Name: opts.name, Description: opts.description, ClientToken: opts.clientToken,
          CopyImageTags: opts.copyImageTags ? 'true' : undefined,
        });
        const [image] = await describeImages(ctx.ec2, [String(response.imageId)]);
        print(opts.json ? JSON.stringify(image, null, 2) : formatImage(image));
      } catch (err) {
        fail(err);
      }
    });

  withClientFlags(program.command('describe-images [ids...]').description('show images: state, type, kernel/ramdisk, layout, image-store location and SHA-256'))
    .option('--json', 'print JSON')
    .action(async (ids: string[], opts) => {
      try {
        const ctx = await clientContext(opts);
        const images = await describeImages(ctx.ec2, ids ?? []);
        process.stdout.write(opts.json ? JSON.stringify(images, null, 2) + '\n' : images.map(formatImage).join('\n') + (images.length ? '\n' : ''));
      } catch (err) {
        fail(err);
      }
    });

  const cert = program.command('cert').description('signing certificates of an account: bundles are verified against them (administrator; works on the task store directly)');
  withStoreFlags(cert.command('add <account> <pem>').description('register a certificate an account signs its bundles with'))
    .action(async (account: string, pem: string, opts) => {
      try {
        const { addSigningCertificate } = await import('../../tasks/signing-certificates');
        const added = await withStore(opts, async (store) => addSigningCertificate(store, (await findAccount(store, account)).accountId, readFileSync(pem, 'utf8')));
        print(`${added.id}\t${added.fingerprint}\t${added.subject}`);
      } catch (err) {
        fail(err);
      }
    });
  withStoreFlags(cert.command('list <account>').description('list an account\'s signing certificates'))
    .option('--json', 'print JSON')
    .action(async (account: string, opts) => {
      try {
        const { listSigningCertificates } = await import('../../tasks/signing-certificates');
        const certs = await withStore(opts, async (store) => listSigningCertificates(store, (await findAccount(store, account)).accountId));
        print(opts.json ? JSON.stringify(certs.map(({ pem, ...c }) => ({ ...c, pem })), null, 2) : certs.map((c) => `${c.id}\t${c.fingerprint}\t${c.subject}\tuntil ${c.notAfter}`).join('\n'));
      } catch (err) {
        fail(err);
      }
    });
  withStoreFlags(cert.command('delete <account> <id>').description('remove a signing certificate (by id or SHA-256 fingerprint)'))
    .action(async (account: string, id: string, opts) => {
      try {
        const { deleteSigningCertificate } = await import('../../tasks/signing-certificates');
        const removed = await withStore(opts, async (store) => deleteSigningCertificate(store, (await findAccount(store, account)).accountId, id));
        if (!removed) throw new Error(`account ${account} has no signing certificate ${id}`);
        print(`${id} deleted`);
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('cloud-cert')
    .description('print the certificate bundlers encrypt bundle keys for (the cloud key of `imaging serve`, made once in its data dir)')
    .option('--data-dir <dir>', 'data directory of `imaging serve` [env IMAGING_DATA_DIR; default ./data]')
    .option('--cloud-key-file <pem>', 'the configured cloud key instead [env IMAGING_CLOUD_KEY_FILE]')
    .action(async (opts) => {
      try {
        const { mkdirSync } = await import('fs');
        const { CLOUD_KEY_FILE, cloudCertificate, ensureCloudKey, readCloudKey } = await import('../../toolkit/bundle/cloud-key');
        const keyFile = opts.cloudKeyFile || process.env.IMAGING_CLOUD_KEY_FILE;
        let pem: string;
        if (keyFile) pem = readCloudKey(keyFile);
        else {
          const dataDir = opts.dataDir || process.env.IMAGING_DATA_DIR || './data';
          mkdirSync(dataDir, { recursive: true, mode: 0o700 });
          pem = ensureCloudKey(join(dataDir, CLOUD_KEY_FILE));
        }
        process.stdout.write(cloudCertificate(pem));
      } catch (err) {
        fail(err);
      }
    });
}
