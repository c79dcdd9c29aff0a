/**
 * ImportImage and ImportSnapshot: a disk already in object storage (the caller's bucket, or a
 * URL of this service's object storage) becomes an image with its snapshot, or a snapshot.
 * The pipeline reads the object with the caller's own object-storage identity.
 */
import { newImportImageTaskId, newImportSnapshotTaskId } from '../../tasks/ids';
import type { ImageFormat, ImportImageSpec, ObjectSourceSpec, Tag, TaskDocument, TaskKind, TaskRequest } from '../../tasks/task';
import { isS3Url, parseS3Url } from '../../toolkit/io/s3-url';
import { Ec2Error, invalidValue } from '../errors';
import type { QueryParams } from '../query-request';
import type { ActionContext, ActionHandler } from './action';
import { bootCheckRequest } from './boot-check-param';
import { startOnce } from './client-token';
import { bootImageRequest } from './kernel-params';
import { parseTagSpecifications } from './describe-common';
import { MAX_VOLUME_GIB, optionalDescription } from './disk-image';
import { importImageTaskXml, importSnapshotTaskXml } from './import-task-xml';
import { checkManifestUrl } from './manifest-url';
import { startImportTask } from './start-task';

export const IMPORT_FORMATS: readonly ImageFormat[] = ['RAW', 'VMDK', 'VHD', 'VHDX', 'QCOW2', 'OVA'];
const IMAGE_ARCHITECTURES = ['i386', 'x86_64', 'arm64'] as const;
const BOOT_MODES = ['legacy-bios', 'uefi', 'uefi-preferred'] as const;
const LICENSE_TYPES = ['AWS', 'BYOL', 'Auto'] as const;
const MAX_CLIENT_TOKEN_CHARS = 64;
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export interface ImportImageInput {
  kind: TaskKind;
  request: TaskRequest;
  tags: Tag[];
}

function source(params: QueryParams, prefix: string, ctx: ActionContext): ObjectSourceSpec {
  const bucket = params.string(`${prefix}UserBucket.S3Bucket`) || undefined;
  const key = params.string(`${prefix}UserBucket.S3Key`) || undefined;
  const url = params.string(`${prefix}Url`) || undefined;
  if (params.string(`${prefix}SnapshotId`)) {
    throw new Ec2Error('InvalidParameterValue', `${prefix}SnapshotId is not supported here: import a disk from ${prefix}UserBucket or ${prefix}Url`);
  }
  if (url && (bucket || key)) throw new Ec2Error('InvalidParameterCombination', `Give either ${prefix}Url or ${prefix}UserBucket, not both`);
  if (url) {
    if (isS3Url(url)) {
      const location = parseS3Url(url);
      return checkedBucket(location.bucket, location.key, `${prefix}Url`);
    }
    checkManifestUrl(`${prefix}Url`, url, ctx.allowedObjectHosts);
    return { url };
  }
  if (!bucket && !key) throw new Ec2Error('MissingParameter', `The request must contain ${prefix}UserBucket.S3Bucket and ${prefix}UserBucket.S3Key, or ${prefix}Url`);
  if (!bucket) throw new Ec2Error('MissingParameter', `The request must contain the parameter ${prefix}UserBucket.S3Bucket`);
  if (!key) throw new Ec2Error('MissingParameter', `The request must contain the parameter ${prefix}UserBucket.S3Key`);
  return checkedBucket(bucket, key, `${prefix}UserBucket.S3Bucket`);
}

function checkedBucket(bucket: string, key: string, name: string): ObjectSourceSpec {
  if (!BUCKET_NAME.test(bucket)) throw invalidValue(name, bucket, 'It must be an S3 bucket name.');
  if (!key) throw new Ec2Error('MissingParameter', `${name} names no object key`);
  return { bucket, key };
}

function format(params: QueryParams, name: string): ImageFormat {
  const text = params.requiredString(name);
  const value = text.toUpperCase() as ImageFormat;
  if (!IMPORT_FORMATS.includes(value)) throw invalidValue(name, text, `It must be one of ${IMPORT_FORMATS.join(', ')}.`);
  return value;
}

function oneOf<T extends string>(params: QueryParams, name: string, allowed: readonly T[], caseInsensitive = false): T | undefined {
  const text = params.string(name);
  if (text === undefined || text === '') return undefined;
  const found = allowed.find((a) => (caseInsensitive ? a.toLowerCase() === text.toLowerCase() : a === text));
  if (!found) throw invalidValue(name, text, `It must be one of ${allowed.join(', ')}.`);
  return found;
}

function refuseEncryption(params: QueryParams): void {
  if (params.boolean('Encrypted') === true || params.string('KmsKeyId')) {
    throw new Ec2Error('InvalidParameterValue', 'Encrypted imports are not supported by this service: it has no key management service. Leave out Encrypted and KmsKeyId.');
  }
}

function clientToken(params: QueryParams): string | undefined {
  const token = params.string('ClientToken') || undefined;
  if (token !== undefined && token.length > MAX_CLIENT_TOKEN_CHARS) throw invalidValue('ClientToken', token.slice(0, 20), `It can be at most ${MAX_CLIENT_TOKEN_CHARS} characters.`);
  return token;
}

/** The indexes N of DiskContainer.N.* present in the request. */
function diskContainerIndexes(params: QueryParams): number[] {
  const indexes = new Set<number>();
  for (const [name] of params.entries()) {
    const m = /^DiskContainer\.(\d+)\./.exec(name);
    if (!m) continue;
    if (Number(m[1]) < 1) throw new Ec2Error('InvalidParameter', `List parameter ${name} is invalid; list indexes start at 1`);
    indexes.add(Number(m[1]));
  }
  return [...indexes].sort((a, b) => a - b);
}

function requestOf(spec: ImportImageSpec, fmt: ImageFormat, token: string | undefined): TaskRequest {
  return {
    format: fmt,
    // Known once the object is found; until then the disk may be as large as a volume can be.
    bytes: 0,
    manifestUrl: '',
    volumeSizeGiB: MAX_VOLUME_GIB,
    ...(spec.diskDescription !== undefined ? { description: spec.diskDescription } : {}),
    importImage: spec,
    ...(token ? { clientToken: token } : {}),
  };
}

const compact = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

export const importImage: ActionHandler<ImportImageInput> = {
  async validate(params, ctx) {
    refuseEncryption(params);
    const indexes = diskContainerIndexes(params);
    if (indexes.length === 0) throw new Ec2Error('MissingParameter', 'The request must contain DiskContainer.1 with its Format and UserBucket (S3Bucket, S3Key) or Url');
    if (indexes.length > 1) {
      throw new Ec2Error('InvalidParameterValue', `The request has ${indexes.length} disk containers; this service imports one disk per ImportImage (an OVA with its disks counts as one). Import further disks with ImportSnapshot.`);
    }
    const prefix = `DiskContainer.${indexes[0]}.`;
    const tagSpecs = parseTagSpecifications(params, ['import-image-task', 'image', 'snapshot']);
    const platform = oneOf(params, 'Platform', ['Linux', 'Windows'] as const, true);
    const spec: ImportImageSpec = compact({
      source: source(params, prefix, ctx),
      description: optionalDescription(params, 'Description'),
      diskDescription: optionalDescription(params, `${prefix}Description`),
      deviceName: params.string(`${prefix}DeviceName`) || undefined,
      architecture: oneOf(params, 'Architecture', IMAGE_ARCHITECTURES) ?? 'x86_64',
      platform,
      bootMode: oneOf(params, 'BootMode', BOOT_MODES),
      licenseType: oneOf(params, 'LicenseType', LICENSE_TYPES, true),
      hypervisor: oneOf(params, 'Hypervisor', ['xen'] as const),
      resourceTags: [...(tagSpecs.get('image') ?? []), ...(tagSpecs.get('snapshot') ?? [])],
    });
    const request: TaskRequest = { ...requestOf(spec, format(params, `${prefix}Format`), clientToken(params)), ...(await bootImageRequest(params, ctx)) };
    const bootCheck = bootCheckRequest(params);
    if (bootCheck) request.bootCheck = bootCheck;
    return { kind: 'import-image', request, tags: tagSpecs.get('import-image-task') ?? [] };
  },
  async run(input, ctx) {
    return importImageTaskXml(await startIdempotent(input, ctx));
  },
};

export const importSnapshot: ActionHandler<ImportImageInput> = {
  async validate(params, ctx) {
    refuseEncryption(params);
    const prefix = 'DiskContainer.';
    const tagSpecs = parseTagSpecifications(params, ['import-snapshot-task', 'snapshot']);
    const spec: ImportImageSpec = compact({
      source: source(params, prefix, ctx),
      description: optionalDescription(params, 'Description'),
      diskDescription: optionalDescription(params, `${prefix}Description`),
      resourceTags: tagSpecs.get('snapshot'),
    });
    const request = requestOf(spec, format(params, `${prefix}Format`), clientToken(params));
    return { kind: 'import-snapshot', request, tags: tagSpecs.get('import-snapshot-task') ?? [] };
  },
  async run(input, ctx) {
    const task = await startIdempotent(input, ctx);
    return { ...importSnapshotTaskXml(task) };
  },
};

/** With a ClientToken, the same token and parameters give the task the first call made (client-token.ts). */
async function startIdempotent({ kind, request, tags }: ImportImageInput, ctx: ActionContext): Promise<TaskDocument> {
  const newTaskId = kind === 'import-image' ? newImportImageTaskId : newImportSnapshotTaskId;
  return startOnce(ctx, request.clientToken, { kind, request, tags }, newTaskId, (ids) => startImportTask(kind, ids, request, ctx, { tags }));
}
