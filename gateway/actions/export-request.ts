/**
 * What CreateInstanceExportTask and ExportImage share: the S3 location and format parameters,
 * the object key EC2 gives an export (`<S3Prefix><exportTaskId>.<ext>`), and recording an export
 * task in `export-requested` for the export stage (pipeline/table.ts) to pick up.
 */
import type { ExportRequest, Tag, TaskDocument, TaskKind } from '../../tasks/task';
import { Ec2Error } from '../errors';
import type { QueryParams } from '../query-request';
import type { ActionContext } from './action';
import { createWithFreshId, withStartEvent } from './start-task';

export const EXPORT_REQUESTED_MESSAGE = 'Exporting';
export const CANCELED_BY_USER = 'Canceled by user';

/** S3 bucket names: 3–63 lowercase letters, digits, dots and hyphens. */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const MAX_PREFIX_CHARS = 512;
const MAX_DESCRIPTION_CHARS = 255;

/** An optional enumerated parameter; a value outside `allowed` is InvalidParameterValue. */
export function oneOf<T extends string>(params: QueryParams, name: string, allowed: readonly T[]): T | undefined {
  const value = params.string(name);
  if (value === undefined || value === '') return undefined;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new Ec2Error('InvalidParameterValue', `Value (${value}) for parameter ${name} is invalid. Valid values: ${allowed.join(', ')}`);
  }
  return value as T;
}

/** `<prefix>S3Bucket` and `<prefix>S3Prefix`, checked. */
export function s3Location(params: QueryParams, prefix: string): { s3Bucket: string; s3Prefix: string } {
  const s3Bucket = params.requiredString(`${prefix}S3Bucket`);
  if (!BUCKET.test(s3Bucket)) throw new Ec2Error('InvalidParameterValue', `Value (${s3Bucket}) for parameter ${prefix}S3Bucket is not a valid S3 bucket name`);
  const s3Prefix = params.string(`${prefix}S3Prefix`) ?? '';
  // eslint-disable-next-line no-control-regex
  if (s3Prefix.length > MAX_PREFIX_CHARS || /[\x00-\x1f]/.test(s3Prefix)) {
    throw new Ec2Error('InvalidParameterValue', `${prefix}S3Prefix must be at most ${MAX_PREFIX_CHARS} printable characters`);
  }
  return { s3Bucket, s3Prefix };
}

export function exportDescription(params: QueryParams): string | undefined {
  const description = params.string('Description') || undefined;
  if (description !== undefined && description.length > MAX_DESCRIPTION_CHARS) {
    throw new Ec2Error('InvalidParameterValue', `Description can be at most ${MAX_DESCRIPTION_CHARS} characters`);
  }
  return description;
}

/** The extension parameter that picks the VHD subformat, allowed only with DiskImageFormat VHD. */
export function vhdTypeOf(params: QueryParams, name: string, diskImageFormat: string): 'dynamic' | 'fixed' | undefined {
  const vhdType = oneOf(params, name, ['dynamic', 'fixed'] as const);
  if (vhdType && diskImageFormat !== 'VHD') throw new Ec2Error('InvalidParameterValue', `${name} applies only to DiskImageFormat VHD`);
  return vhdType;
}

/** The file extension of the exported object, as EC2 names it. */
export function extensionOf(request: Pick<ExportRequest, 'diskImageFormat' | 'containerFormat'>): string {
  return request.containerFormat === 'ova' ? 'ova' : request.diskImageFormat.toLowerCase();
}

/** An export request before its task id (and so its key) is known. */
export type ExportRequestDraft = Omit<ExportRequest, 's3Key'>;

/**
 * Stores a new export task in `export-requested` under a fresh id (or `newTaskId`'s, for a
 * ClientToken's task), with export.requested in its outbox; the object key follows from the id.
 */
export async function createExportTask(
  ctx: ActionContext,
  spec: { kind: TaskKind; newTaskId: () => string; request: ExportRequestDraft; volumeSizeGiB: number; clientToken?: string; tags?: Tag[] },
): Promise<TaskDocument> {
  const now = ctx.now();
  const at = now.toISOString();
  return createWithFreshId(ctx, spec.newTaskId, (id) => withStartEvent({
    id,
    kind: spec.kind,
    accountId: ctx.caller.accountId,
    state: 'export-requested',
    statusMessage: EXPORT_REQUESTED_MESSAGE,
    progress: 0,
    bytesConverted: 0,
    request: {
      format: 'RAW',
      bytes: spec.request.source.size,
      manifestUrl: '',
      volumeSizeGiB: spec.volumeSizeGiB,
      ...(spec.clientToken ? { clientToken: spec.clientToken } : {}),
      export: { ...spec.request, s3Key: `${spec.request.s3Prefix}${id}.${extensionOf(spec.request)}` } as ExportRequest,
    },
    artifacts: {},
    history: [{ at, from: null, to: 'export-requested', message: EXPORT_REQUESTED_MESSAGE }],
    createdAt: at,
    updatedAt: at,
    expiresAt: new Date(now.getTime() + ctx.taskLifetimeMs).toISOString(),
    ...(spec.tags && spec.tags.length ? { tags: spec.tags } : {}),
    version: 0,
  }, 'io.imaging.export.requested'));
}
