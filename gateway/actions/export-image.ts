/**
 * ExportImage and DescribeExportImageTasks: an image made by ImportImage goes back out as VMDK
 * (streamOptimized), VHD or RAW into the caller's bucket, under `<S3Prefix><exportImageTaskId>.<ext>`.
 * The task (export-ami-…) is of kind export-image and is finished by the export stage, like
 * CreateInstanceExportTask's; CancelExportTask cancels it (export-tasks.ts).
 *
 * An image of another account is reported exactly like a missing one (InvalidAMIID.NotFound);
 * an image of the caller that no import made, or whose snapshot is gone, is NotExportable.
 * ClientToken makes the call idempotent as in EC2: the same token and parameters give the first
 * call's task; the same token with other parameters is IdempotentParameterMismatch.
 *
 * Extension (not in EC2's model): X-ImagingVhdType=dynamic|fixed picks the VHD subformat
 * (default dynamic, as EC2 exports).
 */
import { newExportImageTaskId } from '../../tasks/ids';
import type { ImageExportRequest, TaskDocument } from '../../tasks/task';
import { Ec2Error, invalidValue } from '../errors';
import type { QueryParams } from '../query-request';
import type { XmlObject } from '../xml';
import type { ActionContext, ActionHandler } from './action';
import { startOnce } from './client-token';
import { applyFilters, page, parseFilters, parsePageRequest, parseTagSpecifications, tagSetXml, type Filters } from './describe-common';
import { createExportTask, exportDescription, oneOf, s3Location, vhdTypeOf, type ExportRequestDraft } from './export-request';
import { DISK_FORMATS } from './export-tasks';
import { importTaskStatus } from './import-task-xml';
import { announceTask } from './start-task';

const IMAGE_ID = /^ami-([0-9a-f]{8}|[0-9a-f]{17})$/;
const EXPORT_IMAGE_TASK_ID = /^export-ami-[0-9a-f]{8,17}$/;
const MAX_CLIENT_TOKEN_CHARS = 64;
const MAX_ROLE_NAME_CHARS = 64;
const ROLE_NAME = /^[\w+=,.@-]+$/;

interface ExportImageInput {
  request: Omit<ImageExportRequest, 's3Key'>;
  sizeGiB: number;
  clientToken?: string;
  tags: { key: string; value: string }[];
}

function clientToken(params: QueryParams): string | undefined {
  const token = params.string('ClientToken') || undefined;
  if (token !== undefined && token.length > MAX_CLIENT_TOKEN_CHARS) throw invalidValue('ClientToken', token.slice(0, 20), `It can be at most ${MAX_CLIENT_TOKEN_CHARS} characters.`);
  return token;
}

function roleName(params: QueryParams): string | undefined {
  const role = params.string('RoleName') || undefined;
  if (role !== undefined && (role.length > MAX_ROLE_NAME_CHARS || !ROLE_NAME.test(role))) {
    throw invalidValue('RoleName', role.slice(0, 64), 'It must be an IAM role name: up to 64 letters, digits and +=,.@_-');
  }
  return role;
}

const imageNotFound = (id: string) => new Ec2Error('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`);

export const exportImage: ActionHandler<ExportImageInput> = {
  async validate(params, ctx) {
    const imageId = params.requiredString('ImageId');
    if (!IMAGE_ID.test(imageId)) throw new Ec2Error('InvalidAMIID.Malformed', `Invalid id: "${imageId}" (expecting "ami-...")`);
    const diskImageFormat = oneOf(params, 'DiskImageFormat', DISK_FORMATS);
    if (!diskImageFormat) throw new Ec2Error('MissingParameter', 'The request must contain the parameter DiskImageFormat');
    const vhdType = vhdTypeOf(params, 'X-ImagingVhdType', diskImageFormat);
    const { s3Bucket, s3Prefix } = s3Location(params, 'S3ExportLocation.');
    const description = exportDescription(params);
    const role = roleName(params);
    const token = clientToken(params);
    const tags = parseTagSpecifications(params, ['export-image-task']).get('export-image-task') ?? [];

    const image = await ctx.tasks.getResource(imageId);
    if (!image || image.kind !== 'image' || image.accountId !== ctx.caller.accountId) throw imageNotFound(imageId);
    const snapshotId = image.snapshotIds[0];
    const snapshot = snapshotId ? await ctx.tasks.getResource(snapshotId) : undefined;
    // Only what an import made can be exported: an image whose imported snapshot is gone is not.
    if (!snapshot || snapshot.kind !== 'snapshot' || snapshot.accountId !== ctx.caller.accountId || !image.taskId) {
      throw new Ec2Error('NotExportable', `The image ${imageId} is not exportable: only images imported by VM Import, with their imported snapshot, can be exported`);
    }
    const request: Omit<ImageExportRequest, 's3Key'> = {
      imageId,
      snapshotId: snapshot.id,
      source: snapshot.image,
      diskImageFormat,
      ...(diskImageFormat === 'VHD' ? { vhdType: vhdType ?? 'dynamic' } : {}),
      s3Bucket,
      s3Prefix,
      ...(description ? { description } : {}),
      ...(role ? { roleName: role } : {}),
    };
    return { request, sizeGiB: snapshot.sizeGiB, ...(token ? { clientToken: token } : {}), tags };
  },

  async run(input, ctx) {
    return exportImageTaskXml(await startIdempotent(input, ctx));
  },
};

/**
 * Without a ClientToken, a new task. With one, the task the token was first used for (when the
 * parameters are the same), or a new task under the id the token claimed.
 */
async function startIdempotent(input: ExportImageInput, ctx: ActionContext): Promise<TaskDocument> {
  const start = async (newTaskId: () => string) => {
    const task = await createExportTask(ctx, {
      kind: 'export-image', newTaskId, request: input.request as ExportRequestDraft, volumeSizeGiB: input.sizeGiB, clientToken: input.clientToken, tags: input.tags,
    });
    await announceTask(ctx, task);
    return task;
  };
  // The source's location in the image store is the service's business, not the request's.
  const { source: _source, ...asked } = input.request;
  return startOnce(ctx, input.clientToken, { kind: 'export-image', asked, tags: input.tags }, newExportImageTaskId, start);
}

/**
 * EC2's ExportImageTask and ExportImage's answer (the same, with the format and role): status
 * active, completed, deleting or deleted, progress as a string; a failed or cancelled task is
 * deleted with its reason as the status message.
 */
export function exportImageTaskXml(task: TaskDocument): XmlObject {
  const request = task.request.export as ImageExportRequest;
  const { status, statusMessage, progress } = importTaskStatus(task);
  return {
    description: request.description,
    diskImageFormat: request.diskImageFormat,
    exportImageTaskId: task.id,
    imageId: request.imageId,
    roleName: request.roleName,
    progress,
    s3ExportLocation: { s3Bucket: request.s3Bucket, s3Prefix: request.s3Prefix || undefined },
    status,
    statusMessage: status === 'active' ? 'exporting' : statusMessage,
    tagSet: tagSetXml(task.tags),
    // Ours (not in EC2's model; SDKs skip them): where the object is, and the bytes written so far.
    s3Key: request.s3Key,
    bytesConverted: task.bytesConverted,
  };
}

const FILTER_NAMES = ['task-state', 'export-image-task-id', 'image-id', 's3-bucket'] as const;

function filterValues(task: TaskDocument, name: string): (string | undefined)[] {
  const request = task.request.export as ImageExportRequest;
  switch (name) {
    case 'task-state':
      return [importTaskStatus(task).status];
    case 'export-image-task-id':
      return [task.id];
    case 'image-id':
      return [request.imageId];
    case 's3-bucket':
      return [request.s3Bucket];
    default:
      return [];
  }
}

interface DescribeInput {
  tasks: TaskDocument[];
  nextToken?: string;
}

export const describeExportImageTasks: ActionHandler<DescribeInput> = {
  async validate(params, ctx) {
    const ids = [...new Set(params.list('ExportImageTaskId'))];
    for (const id of ids) {
      if (!EXPORT_IMAGE_TASK_ID.test(id)) throw new Ec2Error('InvalidExportTaskID.NotFound', `The export image task ID '${id}' does not exist`);
    }
    const filters: Filters = parseFilters(params, 'Filter', FILTER_NAMES);
    const paging = parsePageRequest(params, { min: 1, max: 500 });
    const found = await ctx.tasks.list({ accountId: ctx.caller.accountId, kinds: ['export-image'], ...(ids.length ? { ids } : {}) });
    // The store filters by account; checking again keeps isolation out of its hands alone.
    const owned = found.filter((task) => task.accountId === ctx.caller.accountId && task.kind === 'export-image' && task.request.export);
    const missing = ids.filter((id) => !owned.some((task) => task.id === id));
    if (missing.length) {
      throw new Ec2Error('InvalidExportTaskID.NotFound', missing.length === 1 ? `The export image task ID '${missing[0]}' does not exist` : `The export image task IDs ${missing.map((id) => `'${id}'`).join(', ')} do not exist`);
    }
    const filtered = applyFilters(owned, filters, filterValues);
    const paged = page(filtered, paging, { kind: 'export-image', account: ctx.caller.accountId, ids, filters: [...filters] });
    return { tasks: paged.items, nextToken: paged.nextToken };
  },

  async run({ tasks, nextToken }) {
    return { exportImageTaskSet: tasks.map((task) => exportImageTaskXml(task)), nextToken };
  },
};
