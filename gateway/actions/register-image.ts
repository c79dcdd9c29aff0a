/**
 * RegisterImage of an EC2 bundle (ImageLocation=bucket/prefix.manifest.xml): the image is
 * recorded at once, pending, under an emi-/eki-/eri- id for the image type its manifest names,
 * and a register-bundle task takes it through the pipeline (manifest: signature; decrypt:
 * unbundle into the image store; register: available). A machine image may name a kernel and a
 * ramdisk; each must be an image of that type of the caller's own. The manifest is read here
 * with the caller's own object-storage key (to learn the image type); the manifest stage reads it
 * again and verifies it.
 */
import { newBundleImageId, newRegisterBundleTaskId } from '../../tasks/ids';
import type { BundleRegistration, ImageRecord, TaskDocument } from '../../tasks/task';
import { MAX_BUNDLE_MANIFEST_BYTES, parseBundleManifest, type BundleManifest } from '../../toolkit/bundle/bundle-manifest';
import { ManifestError } from '../../toolkit/bundle/import-manifest';
import { Ec2Error, invalidValue } from '../errors';
import type { QueryParams } from '../query-request';
import type { ActionContext, ActionHandler } from './action';
import { optionalDescription } from './disk-image';
import { checkAssociation, checkNewImageName } from './image-checks';
import { announceTask, createWithFreshId, PENDING_UPLOAD_MESSAGE, withStartEvent } from './start-task';

const GiB = 1024 ** 3;
const ARCHITECTURES = ['i386', 'x86_64', 'arm64'];
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const DEVICE_NAME = /^\/dev\/[a-z0-9]{2,12}$|^(sd|xvd|hd|vd)[a-z0-9]{1,8}$/;
const VIRTUAL_NAME = /^(ephemeral\d{1,2}|swap|ami|root)$/;

export interface RegisterImageInput {
  registration: BundleRegistration;
  manifest: BundleManifest;
}

/** ImageLocation as EC2 takes it: `bucket/key`, the key ending in .manifest.xml. */
function imageLocation(params: QueryParams): { bucket: string; key: string } {
  const location = params.string('ImageLocation');
  if (!location) {
    throw new Ec2Error('UnsupportedOperation', 'Only images from bundles can be registered here: give ImageLocation=bucket/prefix.manifest.xml (EBS-backed images come from ImportImage)');
  }
  const stripped = location.replace(/^s3:\/\//, '').replace(/^\/+/, '');
  const slash = stripped.indexOf('/');
  const bucket = slash > 0 ? stripped.slice(0, slash) : '';
  const key = slash > 0 ? stripped.slice(slash + 1) : '';
  if (!BUCKET_NAME.test(bucket) || !key) throw invalidValue('ImageLocation', location, 'It must be bucket/prefix.manifest.xml.');
  if (!key.endsWith('.manifest.xml')) throw invalidValue('ImageLocation', location, 'It must name a bundle manifest (a key ending in .manifest.xml).');
  return { bucket, key };
}

function blockDeviceMappings(params: QueryParams): BundleRegistration['blockDeviceMappings'] {
  const out: BundleRegistration['blockDeviceMappings'] = [];
  for (let n = 1; params.has(`BlockDeviceMapping.${n}.DeviceName`) || params.has(`BlockDeviceMapping.${n}.VirtualName`); n++) {
    const deviceName = params.requiredString(`BlockDeviceMapping.${n}.DeviceName`);
    if (!DEVICE_NAME.test(deviceName)) throw invalidValue(`BlockDeviceMapping.${n}.DeviceName`, deviceName, 'It must be a device name such as /dev/sdb.');
    const virtualName = params.string(`BlockDeviceMapping.${n}.VirtualName`) || undefined;
    if (virtualName && !VIRTUAL_NAME.test(virtualName)) throw invalidValue(`BlockDeviceMapping.${n}.VirtualName`, virtualName, 'It must be ephemeral0-ephemeral23, swap, ami or root.');
    if ([...params.entries()].some(([name]) => name.startsWith(`BlockDeviceMapping.${n}.Ebs.`))) {
      throw new Ec2Error('InvalidParameterCombination', `BlockDeviceMapping.${n}.Ebs is not accepted for an instance-store image from a bundle`);
    }
    out.push({ deviceName, ...(virtualName ? { virtualName } : {}), ...(params.has(`BlockDeviceMapping.${n}.NoDevice`) ? { noDevice: true } : {}) });
  }
  return out;
}

async function readManifest(ctx: ActionContext, bucket: string, key: string): Promise<BundleManifest> {
  if (!ctx.readUserObject) throw new Ec2Error('UnsupportedOperation', 'This gateway has no object storage configured, so it cannot read bundle manifests');
  const body = await ctx.readUserObject(ctx.caller.accountId, bucket, key, MAX_BUNDLE_MANIFEST_BYTES);
  if (!body) {
    throw new Ec2Error('InvalidManifest', `The manifest s3://${bucket}/${key} does not exist or cannot be read with your account's credentials; upload the bundle first`);
  }
  try {
    return parseBundleManifest(body);
  } catch (err) {
    if (err instanceof ManifestError) throw new Ec2Error('InvalidManifest', `The manifest s3://${bucket}/${key} is not a bundle manifest: ${err.message}`);
    throw err;
  }
}

export const registerImage: ActionHandler<RegisterImageInput> = {
  async validate(params, ctx) {
    const { bucket, key } = imageLocation(params);
    const name = params.requiredString('Name');
    await checkNewImageName(ctx, name);
    const description = optionalDescription(params, 'Description');
    const architecture = params.string('Architecture');
    if (architecture !== undefined && !ARCHITECTURES.includes(architecture)) throw invalidValue('Architecture', architecture, `It must be one of ${ARCHITECTURES.join(', ')}.`);
    const virtualization = params.string('VirtualizationType');
    if (virtualization !== undefined && virtualization !== 'paravirtual' && virtualization !== 'hvm') throw invalidValue('VirtualizationType', virtualization, 'It must be paravirtual or hvm.');
    const rootDeviceName = params.string('RootDeviceName') || '/dev/sda1';
    if (!DEVICE_NAME.test(rootDeviceName)) throw invalidValue('RootDeviceName', rootDeviceName, 'It must be a device name such as /dev/sda1.');
    const mappings = blockDeviceMappings(params);
    if (params.has('SriovNetSupport') || params.has('BootMode') || params.has('TpmSupport') || params.has('UefiData')) {
      // Accepted and ignored would mislead: say what is not done.
      throw new Ec2Error('InvalidParameterCombination', 'SriovNetSupport, BootMode, TpmSupport and UefiData are not accepted for images from bundles');
    }

    const manifest = await readManifest(ctx, bucket, key);
    const imageType = manifest.imageType;
    const kernelId = params.string('KernelId') || manifest.kernelId || undefined;
    const ramdiskId = params.string('RamdiskId') || manifest.ramdiskId || undefined;
    if (imageType !== 'machine' && (params.string('KernelId') || params.string('RamdiskId'))) {
      throw new Ec2Error('InvalidParameterCombination', `The bundle is a ${imageType} image; only a machine image can be associated with a kernel or a ramdisk`);
    }
    if (imageType === 'machine') {
      if (kernelId) await checkAssociation(ctx, 'KernelId', kernelId, 'kernel');
      if (ramdiskId) await checkAssociation(ctx, 'RamdiskId', ramdiskId, 'ramdisk');
      if (ramdiskId && !kernelId) throw new Ec2Error('InvalidParameterCombination', 'A ramdisk is only used with a kernel: give KernelId as well');
    }

    const registration: BundleRegistration = {
      imageId: '', // allocated by run
      imageType,
      bucket,
      manifestKey: key,
      name,
      ...(description ? { description } : {}),
      architecture: architecture ?? manifest.architecture,
      ...(imageType === 'machine' && kernelId ? { kernelId } : {}),
      ...(imageType === 'machine' && ramdiskId ? { ramdiskId } : {}),
      rootDeviceName,
      blockDeviceMappings: mappings.length ? mappings : manifest.blockDeviceMappings.map((m) => ({ deviceName: m.device.startsWith('/dev/') ? m.device : `/dev/${m.device}`, virtualName: m.virtual })),
      virtualizationType: (virtualization as 'paravirtual' | 'hvm' | undefined) ?? (kernelId && imageType === 'machine' ? 'paravirtual' : 'hvm'),
    };
    if (!ARCHITECTURES.includes(registration.architecture)) throw new Ec2Error('InvalidManifest', `The manifest's architecture "${registration.architecture.slice(0, 40)}" is not one of ${ARCHITECTURES.join(', ')}`);
    return { registration, manifest };
  },

  async run({ registration, manifest }, ctx) {
    const imageId = newBundleImageId(registration.imageType);
    const bundle = { ...registration, imageId };
    const now = ctx.now();
    const at = now.toISOString();
    const task = await createWithFreshId(ctx, newRegisterBundleTaskId, (id): TaskDocument => withStartEvent({
      id,
      kind: 'register-bundle',
      accountId: ctx.caller.accountId,
      state: 'pending-upload',
      statusMessage: PENDING_UPLOAD_MESSAGE,
      progress: 0,
      bytesConverted: 0,
      request: {
        format: 'RAW',
        bytes: manifest.size,
        manifestUrl: `s3://${bundle.bucket}/${bundle.manifestKey}`,
        volumeSizeGiB: Math.max(1, Math.ceil(manifest.size / GiB)),
        ...(bundle.description ? { description: bundle.description } : {}),
        ...(bundle.kernelId ? { kernelId: bundle.kernelId } : {}),
        ...(bundle.ramdiskId ? { ramdiskId: bundle.ramdiskId } : {}),
        bundle,
      },
      artifacts: {},
      history: [{ at, from: null, to: 'pending-upload', message: PENDING_UPLOAD_MESSAGE }],
      createdAt: at,
      updatedAt: at,
      expiresAt: new Date(now.getTime() + ctx.taskLifetimeMs).toISOString(),
      version: 0,
    }, 'io.imaging.import.requested'));
    // The record exists before any stage can finish the task, so the register stage only ever replaces it.
    const record: ImageRecord = {
      id: imageId,
      kind: 'image',
      accountId: task.accountId,
      taskId: task.id,
      name: bundle.name,
      ...(bundle.description ? { description: bundle.description } : {}),
      architecture: bundle.architecture,
      rootDeviceName: bundle.rootDeviceName,
      snapshotIds: [],
      sizeGiB: task.request.volumeSizeGiB,
      createdAt: at,
      imageType: bundle.imageType,
      state: 'pending',
      ...(bundle.kernelId ? { kernelId: bundle.kernelId } : {}),
      ...(bundle.ramdiskId ? { ramdiskId: bundle.ramdiskId } : {}),
      rootDeviceType: 'instance-store',
      imageLocation: `${bundle.bucket}/${bundle.manifestKey}`,
      virtualizationType: bundle.virtualizationType,
      blockDeviceMappings: bundle.blockDeviceMappings,
    };
    await ctx.tasks.putResource(record);
    await announceTask(ctx, task);
    return { imageId };
  },
};
