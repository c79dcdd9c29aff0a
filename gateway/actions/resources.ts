/**
 * What imports create, as EC2 shows and removes it: DescribeImages, DescribeSnapshots,
 * DescribeVolumes, DeregisterImage, DeleteSnapshot, DeleteVolume, CreateTags, DescribeTags.
 * Another account's resource is reported exactly like a missing one.
 */
import { isTerminal, updateTask } from '../../tasks/state-machine';
import type { ImageRecord, ResourceKind, ResourceRecord, SnapshotRecord, StoredObject, Tag, TaskDocument, VolumeRecord } from '../../tasks/task';
import { isAdminAccount } from '../accounts';
import { Ec2Error, type Ec2ErrorCode } from '../errors';
import type { QueryParams } from '../query-request';
import type { XmlObject } from '../xml';
import type { ActionContext, ActionHandler } from './action';
import { applyFilters, MAX_TAGS, page, parseFilters, parsePageRequest, parseTags, tagSetXml } from './describe-common';
import { VERBOSE } from './import-tasks';

/** EC2's Image.platform has one value, "windows"; a Linux image leaves it out (PlatformDetails says Linux/UNIX). */
const windowsOrNothing = (platform: string | undefined): 'windows' | undefined => (platform === 'Windows' ? 'windows' : undefined);

interface KindInfo {
  kind: 'image' | 'snapshot' | 'volume';
  idParam: string;
  /** The id prefix shown in messages; `prefixes` are all that are accepted. */
  prefix: string;
  prefixes: readonly string[];
  malformed: Ec2ErrorCode;
  notFound: Ec2ErrorCode;
  noun: string;
}

const KINDS: Record<'image' | 'snapshot' | 'volume', KindInfo> = {
  // Images from bundles are emi- (machine), eki- (kernel) and eri- (ramdisk), as in Eucalyptus.
  image: { kind: 'image', idParam: 'ImageId', prefix: 'ami', prefixes: ['ami', 'emi', 'eki', 'eri'], malformed: 'InvalidAMIID.Malformed', notFound: 'InvalidAMIID.NotFound', noun: 'image id' },
  snapshot: { kind: 'snapshot', idParam: 'SnapshotId', prefix: 'snap', prefixes: ['snap'], malformed: 'InvalidSnapshotID.Malformed', notFound: 'InvalidSnapshot.NotFound', noun: 'snapshot' },
  volume: { kind: 'volume', idParam: 'VolumeId', prefix: 'vol', prefixes: ['vol'], malformed: 'InvalidVolumeID.Malformed', notFound: 'InvalidVolume.NotFound', noun: 'volume' },
};

const idPattern = (prefixes: readonly string[]) => new RegExp(`^(${prefixes.join('|')})-([0-9a-f]{8}|[0-9a-f]{17})$`);

function checkId(info: KindInfo, id: string): void {
  if (!idPattern(info.prefixes).test(id)) throw new Ec2Error(info.malformed, `Invalid id: "${id}" (expecting "${info.prefix}-...")`);
}

const notFound = (info: KindInfo, ids: string[]) =>
  new Ec2Error(info.notFound, ids.length === 1 ? `The ${info.noun} '${ids[0]}' does not exist` : `The ${info.noun}s ${ids.map((i) => `'${i}'`).join(', ')} do not exist`);

/** One resource of the caller (or not found, whoever owns it). */
async function ownedResource<T extends ResourceRecord>(ctx: ActionContext, info: KindInfo, id: string): Promise<T> {
  checkId(info, id);
  const found = await ctx.tasks.getResource(id);
  if (!found || found.kind !== info.kind || found.accountId !== ctx.caller.accountId) throw notFound(info, [id]);
  return found as T;
}

const FILTERS: Record<'image' | 'snapshot' | 'volume', readonly string[]> = {
  image: ['image-id', 'state', 'architecture', 'name', 'description', 'owner-id', 'platform', 'root-device-name', 'image-type', 'block-device-mapping.snapshot-id', 'boot-mode', 'kernel-id', 'ramdisk-id', 'root-device-type', 'virtualization-type', 'manifest-location'],
  snapshot: ['snapshot-id', 'status', 'owner-id', 'description', 'volume-size', 'volume-id'],
  volume: ['volume-id', 'status', 'availability-zone', 'size', 'snapshot-id'],
};

function filterFields(kind: 'image' | 'snapshot' | 'volume', r: ResourceRecord, name: string): (string | undefined)[] {
  if (name === 'owner-id') return [r.accountId];
  if (kind === 'image') {
    const i = r as ImageRecord;
    const byName: Record<string, (string | undefined)[]> = {
      'image-id': [i.id], state: [i.state ?? 'available'], architecture: [i.architecture], name: [i.name], description: [i.description],
      platform: [windowsOrNothing(i.platform)], 'root-device-name': [i.rootDeviceName], 'image-type': [i.imageType ?? 'machine'],
      'block-device-mapping.snapshot-id': i.snapshotIds, 'boot-mode': [i.bootMode], 'kernel-id': [i.kernelId], 'ramdisk-id': [i.ramdiskId],
      'root-device-type': [i.rootDeviceType ?? 'ebs'], 'virtualization-type': [i.virtualizationType ?? 'hvm'], 'manifest-location': [i.imageLocation],
    };
    return byName[name] ?? [];
  }
  if (kind === 'snapshot') {
    const s = r as SnapshotRecord;
    const byName: Record<string, (string | undefined)[]> = { 'snapshot-id': [s.id], status: ['completed'], description: [s.description], 'volume-size': [String(s.sizeGiB)], 'volume-id': ['vol-ffffffff'] };
    return byName[name] ?? [];
  }
  const v = r as VolumeRecord;
  const byName: Record<string, (string | undefined)[]> = { 'volume-id': [v.id], status: ['available'], 'availability-zone': [v.availabilityZone], size: [String(v.sizeGiB)], 'snapshot-id': [] };
  return byName[name] ?? [];
}

/**
 * Besides EC2's elements, an image from a bundle carries three EC2 does not have (layout,
 * imageStoreLocation, imageSha256): SDKs skip unknown elements, and our own CLI reads them.
 */
function imageXml(i: ImageRecord): XmlObject {
  const instanceStore = i.rootDeviceType === 'instance-store';
  return {
    imageId: i.id,
    imageLocation: i.imageLocation ?? `${i.accountId}/${i.name}`,
    imageState: i.state ?? 'available',
    ...(i.stateReason ? { stateReason: { code: i.stateReason.code, message: i.stateReason.message } } : {}),
    imageOwnerId: i.accountId,
    creationDate: i.createdAt,
    isPublic: false,
    architecture: i.architecture,
    imageType: i.imageType ?? 'machine',
    kernelId: i.kernelId,
    ramdiskId: i.ramdiskId,
    platform: windowsOrNothing(i.platform),
    platformDetails: i.platform === 'Windows' ? 'Windows' : 'Linux/UNIX',
    name: i.name,
    description: i.description,
    rootDeviceType: i.rootDeviceType ?? 'ebs',
    rootDeviceName: i.rootDeviceName,
    blockDeviceMapping: instanceStore
      ? (i.blockDeviceMappings ?? []).map((m) => ({ deviceName: m.deviceName, virtualName: m.virtualName, ...(m.noDevice ? { noDevice: '' } : {}) }))
      : i.snapshotIds.map((snapshotId, n) => ({
          deviceName: n === 0 ? i.rootDeviceName : `/dev/sd${String.fromCharCode(98 + n)}`,
          ebs: { snapshotId, volumeSize: i.sizeGiB, deleteOnTermination: true, volumeType: 'standard', encrypted: false },
        })),
    virtualizationType: i.virtualizationType ?? 'hvm',
    hypervisor: 'xen',
    tagSet: tagSetXml(i.tags),
    bootMode: i.bootMode,
    layout: i.layout,
    imageStoreLocation: i.image ? `s3://${i.image.bucket}/${i.image.key}` : undefined,
    imageSha256: i.image?.sha256,
  };
}

/**
 * A pending image from a bundle as it stands: its task's failure (or cancellation) makes it
 * failed, with the task's message as the reason. The record is left as written; the register
 * stage is the one that makes it available.
 */
export async function currentImage(ctx: ActionContext, image: ImageRecord): Promise<ImageRecord> {
  if (image.state !== 'pending') return image;
  const task = await ctx.tasks.get(image.taskId);
  if (!task || (task.state !== 'failed' && task.state !== 'cancelled')) return image;
  const message = task.statusMessage || (task.state === 'cancelled' ? 'the registration was cancelled' : 'the registration failed');
  return { ...image, state: 'failed', stateReason: { code: task.state === 'cancelled' ? 'Client.UserInitiatedShutdown' : 'Client.InvalidManifest', message } };
}

function snapshotXml(s: SnapshotRecord): XmlObject {
  return {
    snapshotId: s.id,
    volumeId: 'vol-ffffffff', // what EC2 shows for a snapshot made by an import
    status: 'completed',
    startTime: s.createdAt,
    progress: '100%',
    ownerId: s.accountId,
    volumeSize: s.sizeGiB,
    description: s.description,
    encrypted: false,
    tagSet: tagSetXml(s.tags),
    storageTier: 'standard',
  };
}

function volumeXml(v: VolumeRecord): XmlObject {
  return {
    volumeId: v.id,
    size: v.sizeGiB,
    snapshotId: '',
    availabilityZone: v.availabilityZone,
    status: 'available',
    createTime: v.createdAt,
    attachmentSet: [],
    volumeType: 'standard',
    encrypted: false,
    tagSet: tagSetXml(v.tags),
  };
}

interface DescribeInput {
  items: ResourceRecord[];
  nextToken?: string;
}

function describeResources(kind: 'image' | 'snapshot' | 'volume', render: (r: any) => XmlObject, setName: string): ActionHandler<DescribeInput> {
  const info = KINDS[kind];
  return {
    async validate(params: QueryParams, ctx) {
      let ids = [...new Set(params.list(info.idParam))];
      let allAccounts = false;
      if (ids.includes(VERBOSE) && (await isAdminAccount(ctx.tasks, ctx.caller.accountId))) {
        allAccounts = true;
        ids = ids.filter((id) => id !== VERBOSE);
      }
      ids.forEach((id) => checkId(info, id));
      // Owner.N: `self` or account ids; only the caller's own (or, for an admin, anyone's) can be seen.
      const owners = params.list('Owner').map((o) => (o === 'self' ? ctx.caller.accountId : o));
      const filters = parseFilters(params, 'Filter', FILTERS[kind]);
      const paging = parsePageRequest(params, { min: 1, max: 1000 });
      const accountId = allAccounts ? undefined : ctx.caller.accountId;
      let found = await ctx.tasks.listResources({ kind, ...(accountId ? { accountId } : {}), ...(ids.length ? { ids } : {}) });
      if (!allAccounts) found = found.filter((r) => r.accountId === ctx.caller.accountId);
      if (kind === 'image') found = await Promise.all(found.map((r) => currentImage(ctx, r as ImageRecord)));
      const missing = ids.filter((id) => !found.some((r) => r.id === id));
      if (missing.length) throw notFound(info, missing);
      if (owners.length) found = found.filter((r) => owners.includes(r.accountId));
      const filtered = applyFilters(found, filters, (r, name) => filterFields(kind, r, name));
      const paged = page(filtered, paging, { kind, account: ctx.caller.accountId, allAccounts, ids, owners, filters: [...filters] });
      return { items: paged.items, nextToken: paged.nextToken };
    },
    async run({ items, nextToken }) {
      return { [setName]: items.map(render), nextToken };
    },
  };
}

export const describeImages = describeResources('image', imageXml, 'imagesSet');
export const describeSnapshots = describeResources('snapshot', snapshotXml, 'snapshotSet');
export const describeVolumes = describeResources('volume', volumeXml, 'volumeSet');

/**
 * Deletes an object of the image store once no record of its account names it any more. Records
 * share bytes by reference (CopyImage: an instance-store image and the snapshot of its copy, or
 * two images' snapshots), so the record is deleted first and the bytes go with the last one. Two
 * deletes at once cannot both keep the bytes: whichever looks last finds the other record gone.
 */
async function releaseBytes(ctx: ActionContext, accountId: string, object: StoredObject): Promise<void> {
  for (const kind of ['image', 'snapshot', 'volume'] as const) {
    const records = await ctx.tasks.listResources({ kind, accountId });
    if (records.some((r) => 'image' in r && r.image && r.image.bucket === object.bucket && r.image.key === object.key)) return;
  }
  await ctx.deleteImageObject?.(object.bucket, object.key);
}

/** Asks a running task to stop (the stages see the request while they work). */
async function requestCancel(ctx: ActionContext, taskId: string): Promise<void> {
  await updateTask(ctx.tasks, taskId, (doc) =>
    isTerminal(doc.state) || doc.cancelRequested ? undefined : { ...doc, cancelRequested: { at: ctx.now().toISOString(), reason: 'The image was deregistered' } });
}

async function snapshotInUseBy(ctx: ActionContext, snapshot: SnapshotRecord): Promise<string | undefined> {
  const images = await ctx.tasks.listResources({ kind: 'image', accountId: snapshot.accountId });
  return images.find((i) => (i as ImageRecord).snapshotIds.includes(snapshot.id))?.id;
}

export const deregisterImage: ActionHandler<{ image: ImageRecord; deleteSnapshots: boolean }> = {
  async validate(params, ctx) {
    const image = await ownedResource<ImageRecord>(ctx, KINDS.image, params.requiredString('ImageId'));
    return { image, deleteSnapshots: params.boolean('DeleteAssociatedSnapshots') ?? false };
  },
  async run({ image, deleteSnapshots }, ctx) {
    await ctx.tasks.deleteResource(image.id);
    // An image from a bundle holds its bytes in the image store (a copy's snapshot may share them);
    // an unfinished registration is cancelled.
    if (image.image) await releaseBytes(ctx, image.accountId, image.image);
    if (image.state === 'pending') await requestCancel(ctx, image.taskId);
    if (!deleteSnapshots) return { return: true };
    const results: XmlObject[] = [];
    for (const id of image.snapshotIds) {
      const snapshot = await ctx.tasks.getResource(id);
      if (snapshot?.kind === 'snapshot' && snapshot.accountId === image.accountId && !(await snapshotInUseBy(ctx, snapshot))) {
        await ctx.tasks.deleteResource(id);
        await releaseBytes(ctx, snapshot.accountId, snapshot.image);
        results.push({ snapshotId: id, returnCode: 'success' });
      } else {
        results.push({ snapshotId: id, returnCode: 'error-generic' });
      }
    }
    return { return: true, deleteSnapshotResultSet: results };
  },
};

export const deleteSnapshot: ActionHandler<SnapshotRecord> = {
  async validate(params, ctx) {
    const snapshot = await ownedResource<SnapshotRecord>(ctx, KINDS.snapshot, params.requiredString('SnapshotId'));
    const image = await snapshotInUseBy(ctx, snapshot);
    if (image) throw new Ec2Error('InvalidSnapshot.InUse', `The snapshot ${snapshot.id} is currently in use by ${image}`);
    return snapshot;
  },
  async run(snapshot, ctx) {
    await ctx.tasks.deleteResource(snapshot.id);
    await releaseBytes(ctx, snapshot.accountId, snapshot.image);
    return { return: true };
  },
};

export const deleteVolume: ActionHandler<VolumeRecord> = {
  async validate(params, ctx) {
    return ownedResource<VolumeRecord>(ctx, KINDS.volume, params.requiredString('VolumeId'));
  },
  async run(volume, ctx) {
    await ctx.tasks.deleteResource(volume.id);
    await releaseBytes(ctx, volume.accountId, volume.image);
    return { return: true };
  },
};

/** What CreateTags can tag: resources, and import tasks themselves. */
type Taggable = { resource: ResourceRecord } | { task: TaskDocument };

const TAGGABLE_PREFIXES: Record<string, ResourceKind> = { ami: 'image', emi: 'image', eki: 'image', eri: 'image', snap: 'snapshot', vol: 'volume', i: 'instance' };

async function taggable(ctx: ActionContext, id: string): Promise<Taggable> {
  if (/^import-(ami|snap)-[0-9a-f]{8,17}$/.test(id)) {
    const task = await ctx.tasks.get(id);
    if (!task || task.accountId !== ctx.caller.accountId) throw new Ec2Error('InvalidID', `The ID '${id}' is not valid`);
    return { task };
  }
  const m = /^([a-z]+)-([0-9a-f]{8}|[0-9a-f]{17})$/.exec(id);
  const kind = m ? TAGGABLE_PREFIXES[m[1]] : undefined;
  if (!kind) throw new Ec2Error('InvalidID', `The ID '${id}' is not valid`);
  const found = await ctx.tasks.getResource(id);
  if (!found || found.kind !== kind || found.accountId !== ctx.caller.accountId) {
    const info = KINDS[kind as 'image' | 'snapshot' | 'volume'];
    if (info) throw notFound(info, [id]);
    throw new Ec2Error('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
  }
  return { resource: found };
}

function mergeTags(existing: Tag[] | undefined, added: Tag[]): Tag[] {
  const merged = new Map((existing ?? []).map((t) => [t.key, t.value]));
  for (const t of added) merged.set(t.key, t.value);
  if (merged.size > MAX_TAGS) throw new Ec2Error('TagLimitExceeded', `A resource can have at most ${MAX_TAGS} tags`);
  return [...merged].map(([key, value]) => ({ key, value }));
}

export const createTags: ActionHandler<{ targets: Taggable[]; tags: Tag[] }> = {
  async validate(params, ctx) {
    const ids = [...new Set(params.list('ResourceId'))];
    if (ids.length === 0) throw new Ec2Error('MissingParameter', 'The request must contain the parameter ResourceId.1');
    const tags = parseTags(params, 'Tag');
    if (tags.length === 0) throw new Ec2Error('MissingParameter', 'The request must contain the parameter Tag.1.Key');
    const targets: Taggable[] = [];
    for (const id of ids) targets.push(await taggable(ctx, id));
    for (const t of targets) mergeTags('task' in t ? t.task.tags : t.resource.tags, tags);
    return { targets, tags };
  },
  async run({ targets, tags }, ctx) {
    for (const target of targets) {
      if ('task' in target) {
        await updateTask(ctx.tasks, target.task.id, (doc) => ({ ...doc, tags: mergeTags(doc.tags, tags) }));
      } else {
        // Read again: the record may have changed since validate (two CreateTags at once keep both only
        // per write; resources have no version, which is acceptable for tags).
        const current = await ctx.tasks.getResource(target.resource.id);
        if (current) await ctx.tasks.putResource({ ...current, tags: mergeTags(current.tags, tags) } as ResourceRecord);
      }
    }
    return { return: true };
  },
};

const RESOURCE_TYPES: Record<Exclude<ResourceKind, 'signing-certificate'>, string> = { image: 'image', snapshot: 'snapshot', volume: 'volume', instance: 'instance' };

export const describeTags: ActionHandler<{ items: XmlObject[]; nextToken?: string }> = {
  async validate(params, ctx) {
    const filters = parseFilters(params, 'Filter', ['resource-id', 'resource-type', 'key', 'value']);
    const paging = parsePageRequest(params, { min: 5, max: 1000 });
    const rows: { resourceId: string; resourceType: string; key: string; value: string; tags?: undefined }[] = [];
    for (const kind of Object.keys(RESOURCE_TYPES) as (keyof typeof RESOURCE_TYPES)[]) {
      for (const r of await ctx.tasks.listResources({ kind, accountId: ctx.caller.accountId })) {
        for (const t of r.tags ?? []) rows.push({ resourceId: r.id, resourceType: RESOURCE_TYPES[kind], key: t.key, value: t.value });
      }
    }
    for (const task of await ctx.tasks.list({ accountId: ctx.caller.accountId, kinds: ['import-image', 'import-snapshot'] })) {
      for (const t of task.tags ?? []) rows.push({ resourceId: task.id, resourceType: task.kind === 'import-image' ? 'import-image-task' : 'import-snapshot-task', key: t.key, value: t.value });
    }
    const filtered = applyFilters(rows, filters, (row, name) =>
      name === 'resource-id' ? [row.resourceId] : name === 'resource-type' ? [row.resourceType] : name === 'key' ? [row.key] : name === 'value' ? [row.value] : []);
    const paged = page(filtered, paging, { tags: ctx.caller.accountId, filters: [...filters] });
    return { items: paged.items.map(({ resourceId, resourceType, key, value }) => ({ resourceId, resourceType, key, value })), nextToken: paged.nextToken };
  },
  async run({ items, nextToken }) {
    return { tagSet: items, nextToken };
  },
};
