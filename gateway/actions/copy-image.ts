/**
 * CopyImage, this service's one documented call from an instance-store image to a volume-backed
 * one: copying an image registered from a bundle (emi-) gives a new ami- whose root device is EBS,
 * backed by a new snapshot (snap-) holding the same bytes. An EBS-backed image (ami-) is copied
 * as EC2 copies it: a new ami- with new snapshots. This is where the service departs from EC2,
 * whose CopyImage keeps the backing type (an instance-store AMI stays instance-store).
 *
 * Images never change once available, so the copy shares the source's bytes in the image store
 * by reference: nothing is copied, the new image is available at once, and the bytes are freed
 * only when the last record naming them (image, snapshot or volume) is deleted
 * (resources.ts, releaseBytes). Same region and same account only: another account's image
 * answers InvalidAMIID.NotFound, as it does everywhere. Kernel and ramdisk images are not disks
 * and are not copied; Encrypted/KmsKeyId are refused as ImportImage refuses them (no KMS here).
 */
import { newImageId, newSnapshotId } from '../../tasks/ids';
import type { ImageRecord, SnapshotRecord, StoredObject, Tag } from '../../tasks/task';
import { Ec2Error, invalidValue } from '../errors';
import type { QueryParams } from '../query-request';
import type { ActionContext, ActionHandler } from './action';
import { makeOnce } from './client-token';
import { MAX_TAGS, parseTagSpecifications } from './describe-common';
import { optionalDescription } from './disk-image';
import { checkNewImageName } from './image-checks';
import { currentImage } from './resources';

const GiB = 1024 ** 3;
const MAX_CLIENT_TOKEN_CHARS = 64;
const IMAGE_ID = /^(ami|emi|eki|eri)-([0-9a-f]{8}|[0-9a-f]{17})$/;

/** One disk of the copy: the bytes it shares and the snapshot it came from (an EBS source's). */
interface CopiedDisk {
  object: StoredObject;
  sourceSnapshotId?: string;
}

interface CopyImageInput {
  source: ImageRecord;
  disks: CopiedDisk[];
  name: string;
  description?: string;
  imageTags: Tag[];
  snapshotTags: Tag[];
  clientToken?: string;
}

function clientToken(params: QueryParams): string | undefined {
  const token = params.string('ClientToken') || undefined;
  if (token !== undefined && token.length > MAX_CLIENT_TOKEN_CHARS) throw invalidValue('ClientToken', token.slice(0, 20), `It can be at most ${MAX_CLIENT_TOKEN_CHARS} characters.`);
  return token;
}

function refuseUnsupported(params: QueryParams, region: string): void {
  if (params.boolean('Encrypted') === true || params.string('KmsKeyId')) {
    throw new Ec2Error('InvalidParameterValue', 'Encrypted copies are not supported by this service: it has no key management service. Leave out Encrypted and KmsKeyId.');
  }
  for (const name of ['DestinationOutpostArn', 'DestinationAvailabilityZone', 'DestinationAvailabilityZoneId']) {
    if (params.string(name)) throw new Ec2Error('InvalidParameterCombination', `${name} is not supported here: the copy is made in this region (${region})`);
  }
  const sourceRegion = params.requiredString('SourceRegion');
  if (sourceRegion !== region) {
    throw invalidValue('SourceRegion', sourceRegion, `This service copies images within its own region (${region}) only.`);
  }
}

/** The source image, as it stands: the caller's, available, a machine image. */
async function sourceImage(ctx: ActionContext, id: string): Promise<ImageRecord> {
  if (!IMAGE_ID.test(id)) throw new Ec2Error('InvalidAMIID.Malformed', `Invalid id: "${id}" (expecting "ami-..." or "emi-...")`);
  const found = await ctx.tasks.getResource(id);
  if (!found || found.kind !== 'image' || found.accountId !== ctx.caller.accountId) throw new Ec2Error('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`);
  const image = await currentImage(ctx, found);
  const type = image.imageType ?? 'machine';
  if (type !== 'machine') {
    throw new Ec2Error('InvalidParameterValue', `SourceImageId ${id} is a ${type} image; only machine images can be copied into a volume-backed image (a ${type} is loaded by the machine image that names it)`);
  }
  const state = image.state ?? 'available';
  if (state !== 'available') throw new Ec2Error('IncorrectState', `The image ${id} is ${state}; only an available image can be copied`);
  return image;
}

/** What the copy's snapshots share: the instance-store image's bytes, or each of the EBS image's snapshots' bytes. */
async function disksOf(ctx: ActionContext, image: ImageRecord): Promise<CopiedDisk[]> {
  if (image.rootDeviceType === 'instance-store') {
    if (!image.image) throw new Ec2Error('IncorrectState', `The image ${image.id} has no bytes in the image store yet; only an available image can be copied`);
    return [{ object: image.image }];
  }
  const disks: CopiedDisk[] = [];
  for (const snapshotId of image.snapshotIds) {
    const snapshot = await ctx.tasks.getResource(snapshotId);
    if (!snapshot || snapshot.kind !== 'snapshot' || snapshot.accountId !== image.accountId) {
      throw new Ec2Error('IncorrectState', `The image ${image.id} cannot be copied: its snapshot ${snapshotId} is gone`);
    }
    disks.push({ object: snapshot.image, sourceSnapshotId: snapshot.id });
  }
  if (disks.length === 0) throw new Ec2Error('IncorrectState', `The image ${image.id} has no snapshot to copy`);
  return disks;
}

export const copyImage: ActionHandler<CopyImageInput> = {
  async validate(params, ctx) {
    refuseUnsupported(params, ctx.region);
    const sourceId = params.requiredString('SourceImageId');
    const name = params.requiredString('Name');
    const description = optionalDescription(params, 'Description') || undefined;
    const token = clientToken(params);
    const tagSpecs = parseTagSpecifications(params, ['image', 'snapshot']);
    const source = await sourceImage(ctx, sourceId);
    const disks = await disksOf(ctx, source);
    // CopyImageTags: the source's own tags go onto the new image; TagSpecification's win on a clash.
    const merged = new Map<string, string>();
    if (params.boolean('CopyImageTags') === true) for (const t of source.tags ?? []) merged.set(t.key, t.value);
    for (const t of tagSpecs.get('image') ?? []) merged.set(t.key, t.value);
    if (merged.size > MAX_TAGS) throw new Ec2Error('TagLimitExceeded', `A resource can have at most ${MAX_TAGS} tags`);
    const imageTags = [...merged].map(([key, value]) => ({ key, value }));
    // A retried call with its ClientToken answers the first call's image, whose name is taken by then.
    await checkNewImageName(ctx, name, (taken) => !!token && taken.clientToken === token);
    return { source, disks, name, ...(description ? { description } : {}), imageTags, snapshotTags: tagSpecs.get('snapshot') ?? [], ...(token ? { clientToken: token } : {}) };
  },

  async run(input, ctx) {
    const asked = { kind: 'copy-image', source: input.source.id, name: input.name, description: input.description, imageTags: input.imageTags, snapshotTags: input.snapshotTags };
    const imageId = await makeOnce(
      ctx, input.clientToken, asked, newImageId,
      async (id) => ((await ctx.tasks.getResource(id)) ? id : undefined),
      (ids) => makeCopy(input, ids(), ctx),
    );
    return { imageId };
  },
};

/**
 * Writes the snapshots, then the image, then looks at the source again: a DeregisterImage that
 * ran meanwhile either saw the new snapshots (and kept the bytes) or deleted the source before
 * they were written, in which case the copy is taken back and answers as if the source was gone.
 */
async function makeCopy(input: CopyImageInput, imageId: string, ctx: ActionContext): Promise<string> {
  const { source } = input;
  const createdAt = ctx.now().toISOString();
  const snapshots: SnapshotRecord[] = input.disks.map((disk) => ({
    id: newSnapshotId(),
    kind: 'snapshot',
    accountId: source.accountId,
    // The task that made the bytes: the source's.
    taskId: source.taskId,
    sizeGiB: Math.max(1, Math.ceil(disk.object.size / GiB)),
    image: disk.object,
    description: `Copied for DestinationAmi ${imageId} from SourceAmi ${source.id}${disk.sourceSnapshotId ? ` for SourceSnapshot ${disk.sourceSnapshotId}` : ''}`,
    ...(input.snapshotTags.length ? { tags: input.snapshotTags } : {}),
    createdAt,
  }));
  for (const snapshot of snapshots) await ctx.tasks.putResource(snapshot);
  const image: ImageRecord = {
    id: imageId,
    kind: 'image',
    accountId: source.accountId,
    taskId: source.taskId,
    name: input.name,
    ...(input.description ? { description: input.description } : {}),
    architecture: source.architecture,
    ...(source.platform ? { platform: source.platform } : {}),
    ...(source.bootMode ? { bootMode: source.bootMode } : {}),
    rootDeviceName: source.rootDeviceName,
    snapshotIds: snapshots.map((s) => s.id),
    sizeGiB: Math.max(...snapshots.map((s) => s.sizeGiB)),
    ...(input.imageTags.length ? { tags: input.imageTags } : {}),
    ...(input.clientToken ? { clientToken: input.clientToken } : {}),
    createdAt,
    state: 'available',
    rootDeviceType: 'ebs',
    ...(source.kernelId ? { kernelId: source.kernelId } : {}),
    ...(source.ramdiskId ? { ramdiskId: source.ramdiskId } : {}),
    ...(source.layout ? { layout: source.layout } : {}),
    ...(source.virtualizationType ? { virtualizationType: source.virtualizationType } : {}),
  };
  await ctx.tasks.putResource(image);
  const stillThere = await ctx.tasks.getResource(source.id);
  const sourceSnapshotsThere = await Promise.all(input.disks.map(async (d) => !d.sourceSnapshotId || !!(await ctx.tasks.getResource(d.sourceSnapshotId))));
  if (!stillThere || sourceSnapshotsThere.includes(false)) {
    await ctx.tasks.deleteResource(imageId);
    for (const snapshot of snapshots) await ctx.tasks.deleteResource(snapshot.id);
    throw new Ec2Error('InvalidAMIID.NotFound', `The image id '[${source.id}]' does not exist (it was deregistered while it was being copied)`);
  }
  return imageId;
}
