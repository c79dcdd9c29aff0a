/**
 * CreateInstanceExportTask, DescribeExportTasks and CancelExportTask: an export is a task of kind
 * export-instance that starts in `export-requested` and is finished by the export stage alone
 * (pipeline/table.ts). Rendered as EC2's ExportTask structure. CancelExportTask also cancels
 * ExportImage's tasks (export-ami-…), as in EC2.
 *
 * Extension (not in EC2's model, so SDKs that validate parameters cannot send it; the Query API
 * and our CLI can): ExportToS3.X-ImagingVhdType=dynamic|fixed picks the VHD subformat. Without
 * it, TargetEnvironment microsoft exports a fixed VHD (what Hyper-V/Azure take as is), the others
 * a dynamic one.
 */
import { newExportInstanceTaskId } from '../../tasks/ids';
import { ec2ConversionState, isTerminal, updateTask } from '../../tasks/state-machine';
import { EXPORT_TASK_KINDS, isImageExport, type ExportDiskImageFormat, type ExportTargetEnvironment, type InstanceExportRequest, type TaskDocument } from '../../tasks/task';
import { Ec2Error } from '../errors';
import type { QueryParams } from '../query-request';
import type { XmlObject } from '../xml';
import type { ActionHandler } from './action';
import { CANCELED_BY_USER, createExportTask, exportDescription, oneOf, s3Location, vhdTypeOf, type ExportRequestDraft } from './export-request';
import { announceTask } from './start-task';

const TARGET_ENVIRONMENTS: readonly ExportTargetEnvironment[] = ['citrix', 'vmware', 'microsoft'];
export const DISK_FORMATS: readonly ExportDiskImageFormat[] = ['VMDK', 'VHD', 'RAW'];
/** What each hypervisor family takes when the request names no disk format. */
const DEFAULT_FORMAT: Record<ExportTargetEnvironment, ExportDiskImageFormat> = { vmware: 'VMDK', citrix: 'VHD', microsoft: 'VHD' };
const INSTANCE_ID = /^i-([0-9a-f]{8}|[0-9a-f]{17})$/;
/** CancelExportTask takes both kinds: export-i-… (CreateInstanceExportTask) and export-ami-… (ExportImage). */
const EXPORT_TASK_ID = /^export-(i|ami)-[0-9a-f]{8,17}$/;

type CreateInput = Omit<InstanceExportRequest, 's3Key'> & { sizeGiB: number };

/** Another account's instance is reported exactly like a missing one. */
const instanceNotFound = (id: string) => new Ec2Error('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);

export const createInstanceExportTask: ActionHandler<CreateInput> = {
  async validate(params, ctx) {
    const instanceId = params.requiredString('InstanceId');
    if (!INSTANCE_ID.test(instanceId)) throw new Ec2Error('InvalidInstanceID.Malformed', `Invalid id: "${instanceId}"`);
    const targetEnvironment = oneOf(params, 'TargetEnvironment', TARGET_ENVIRONMENTS);
    if (!targetEnvironment) throw new Ec2Error('MissingParameter', 'The request must contain the parameter TargetEnvironment');
    const containerFormat = oneOf(params, 'ExportToS3.ContainerFormat', ['ova'] as const);
    const diskImageFormat = oneOf(params, 'ExportToS3.DiskImageFormat', DISK_FORMATS) ?? (containerFormat ? 'VMDK' : DEFAULT_FORMAT[targetEnvironment]);
    if (containerFormat === 'ova' && diskImageFormat !== 'VMDK') {
      throw new Ec2Error('InvalidParameterValue', `ContainerFormat ova holds a VMDK disk; DiskImageFormat ${diskImageFormat} cannot be put in an OVA`);
    }
    const vhdType = vhdTypeOf(params, 'ExportToS3.X-ImagingVhdType', diskImageFormat);
    const { s3Bucket, s3Prefix } = s3Location(params, 'ExportToS3.');
    const description = exportDescription(params);

    const instance = await ctx.tasks.getResource(instanceId);
    if (!instance || instance.kind !== 'instance' || instance.accountId !== ctx.caller.accountId) throw instanceNotFound(instanceId);
    const volumeId = instance.volumeIds[0];
    const volume = volumeId ? await ctx.tasks.getResource(volumeId) : undefined;
    // Only what an import made can be exported: an instance whose imported disk is gone is not.
    if (!volume || volume.kind !== 'volume' || volume.accountId !== ctx.caller.accountId || !instance.taskId) {
      throw new Ec2Error('NotExportable', `The instance ${instanceId} is not exportable: only instances imported by VM Import, with their imported volume, can be exported`);
    }
    return {
      instanceId,
      volumeId: volume.id,
      source: volume.image,
      sizeGiB: volume.sizeGiB,
      targetEnvironment,
      diskImageFormat,
      ...(containerFormat ? { containerFormat } : {}),
      ...(diskImageFormat === 'VHD' ? { vhdType: vhdType ?? (targetEnvironment === 'microsoft' ? 'fixed' : 'dynamic') } : {}),
      s3Bucket,
      s3Prefix,
      ...(description ? { description } : {}),
    };
  },

  async run({ sizeGiB, ...request }, ctx) {
    const task = await createExportTask(ctx, { kind: 'export-instance', newTaskId: newExportInstanceTaskId, request: request as ExportRequestDraft, volumeSizeGiB: sizeGiB });
    await announceTask(ctx, task);
    return { exportTask: exportTaskXml(task) };
  },
};

/**
 * EC2's ExportTask. `progress` and `bytesConverted` are ours (EC2's model has no progress for
 * export tasks): SDKs skip unknown elements, and our CLI reads them.
 */
export function exportTaskXml(task: TaskDocument): XmlObject {
  const request = task.request.export as InstanceExportRequest;
  return {
    description: request.description,
    exportTaskId: task.id,
    exportToS3: {
      containerFormat: request.containerFormat,
      diskImageFormat: request.diskImageFormat,
      s3Bucket: request.s3Bucket,
      s3Key: request.s3Key,
    },
    instanceExport: { instanceId: request.instanceId, targetEnvironment: request.targetEnvironment },
    state: ec2ConversionState(task),
    statusMessage: task.statusMessage,
    progress: task.progress,
    bytesConverted: task.bytesConverted,
  };
}

function checkExportTaskId(id: string): void {
  if (!EXPORT_TASK_ID.test(id)) throw new Ec2Error('InvalidExportTaskID.NotFound', `The export task ID '${id}' does not exist`);
}

const unknownExportTasks = (ids: string[]) =>
  new Ec2Error('InvalidExportTaskID.NotFound', ids.length === 1 ? `The export task ID '${ids[0]}' does not exist` : `The export task IDs ${ids.map((id) => `'${id}'`).join(', ')} do not exist`);

interface Filter { name: string; values: string[] }
const FILTERS: Record<string, (task: TaskDocument) => string | undefined> = {
  'export-task-id': (task) => task.id,
  state: (task) => ec2ConversionState(task),
  'instance-id': (task) => (task.request.export as InstanceExportRequest | undefined)?.instanceId,
  's3-bucket': (task) => task.request.export?.s3Bucket,
};

function parseFilters(params: QueryParams): Filter[] {
  const filters: Filter[] = [];
  for (let n = 1; params.has(`Filter.${n}.Name`); n++) {
    const name = params.string(`Filter.${n}.Name`)!;
    if (!Object.prototype.hasOwnProperty.call(FILTERS, name)) {
      throw new Ec2Error('InvalidParameterValue', `The filter '${name}' is invalid; filters: ${Object.keys(FILTERS).join(', ')}`);
    }
    filters.push({ name, values: params.list(`Filter.${n}.Value`) });
  }
  return filters;
}

export const describeExportTasks: ActionHandler<TaskDocument[]> = {
  async validate(params, ctx) {
    const ids = [...new Set(params.list('ExportTaskId'))];
    ids.forEach(checkExportTaskId);
    const filters = parseFilters(params);
    const found = await ctx.tasks.list({ accountId: ctx.caller.accountId, kinds: ['export-instance'], ...(ids.length ? { ids } : {}) });
    const owned = found.filter((task) => task.accountId === ctx.caller.accountId && task.request.export && !isImageExport(task.request.export));
    const missing = ids.filter((id) => !owned.some((task) => task.id === id));
    if (missing.length) throw unknownExportTasks(missing);
    return owned.filter((task) => filters.every((f) => f.values.length === 0 || f.values.includes(FILTERS[f.name](task) ?? '')));
  },

  async run(tasks) {
    return { exportTaskSet: tasks.map(exportTaskXml) };
  },
};

export const cancelExportTask: ActionHandler<string> = {
  async validate(params, ctx) {
    const id = params.requiredString('ExportTaskId');
    checkExportTaskId(id);
    const task = await ctx.tasks.get(id);
    if (!task || task.accountId !== ctx.caller.accountId || !EXPORT_TASK_KINDS.includes(task.kind)) throw unknownExportTasks([id]);
    if (isTerminal(task.state)) throw new Ec2Error('IncorrectState', `Export task ${id} has already finished (${ec2ConversionState(task)}); only an active task can be cancelled`);
    return id;
  },

  async run(id, ctx) {
    let finished: TaskDocument | undefined;
    await updateTask(ctx.tasks, id, (doc) => {
      if (isTerminal(doc.state)) {
        finished = doc;
        return undefined;
      }
      // The export stage sees the request while it works, aborts its upload and ends the task.
      if (doc.cancelRequested) return undefined;
      const at = ctx.now().toISOString();
      return { ...doc, cancelRequested: { at, reason: CANCELED_BY_USER }, updatedAt: at };
    });
    if (finished) throw new Ec2Error('IncorrectState', `Export task ${id} has already finished (${ec2ConversionState(finished)}); only an active task can be cancelled`);
    return { return: true };
  },
};
