/** The action table: what this gateway does with each EC2 Action name. */
import { DRY_RUN_MESSAGE, Ec2Error } from '../errors';
import type { QueryParams } from '../query-request';
import type { XmlObject } from '../xml';
import type { ActionContext, ActionHandler } from './action';
import { cancelConversionTask } from './cancel-conversion-task';
import { describeConversionTasks } from './describe-conversion-tasks';
import { importInstance } from './import-instance';
import { importVolume } from './import-volume';
import { importImage, importSnapshot } from './import-image';
import { createTags, deleteSnapshot, deleteVolume, deregisterImage, describeImages, describeSnapshots, describeTags, describeVolumes } from './resources';
import { cancelImportTask, describeImportImageTasks, describeImportSnapshotTasks } from './import-tasks';
import { cancelExportTask, createInstanceExportTask, describeExportTasks } from './export-tasks';
import { registerImage } from './register-image';
import { copyImage } from './copy-image';
import { describeExportImageTasks, exportImage } from './export-image';
import { bundleInstance, cancelBundleTask, describeBundleTasks } from './bundle-tasks';

export const ACTIONS: Record<string, ActionHandler<any>> = {
  ImportVolume: importVolume,
  ImportInstance: importInstance,
  DescribeConversionTasks: describeConversionTasks,
  CancelConversionTask: cancelConversionTask,
  ImportImage: importImage,
  ImportSnapshot: importSnapshot,
  DescribeImportImageTasks: describeImportImageTasks,
  DescribeImportSnapshotTasks: describeImportSnapshotTasks,
  CancelImportTask: cancelImportTask,
  DescribeImages: describeImages,
  DescribeSnapshots: describeSnapshots,
  DescribeVolumes: describeVolumes,
  DeregisterImage: deregisterImage,
  DeleteSnapshot: deleteSnapshot,
  DeleteVolume: deleteVolume,
  CreateTags: createTags,
  DescribeTags: describeTags,
  // Export (issue 13).
  CreateInstanceExportTask: createInstanceExportTask,
  DescribeExportTasks: describeExportTasks,
  CancelExportTask: cancelExportTask,
  // Bundles (issue 14).
  RegisterImage: registerImage,
  CopyImage: copyImage,
  ExportImage: exportImage,
  DescribeExportImageTasks: describeExportImageTasks,
  BundleInstance: bundleInstance,
  DescribeBundleTasks: describeBundleTasks,
  CancelBundleTask: cancelBundleTask,
};

/** VM Import/Export actions this service is meant to have but does not have yet. */
export const PLANNED_ACTIONS: readonly string[] = [];

/** Validates and runs `action`; DryRun stops after validation, as EC2 does. */
export async function runAction(action: string, params: QueryParams, ctx: ActionContext): Promise<XmlObject> {
  const handler = Object.prototype.hasOwnProperty.call(ACTIONS, action) ? ACTIONS[action] : undefined;
  if (!handler) {
    if (PLANNED_ACTIONS.includes(action)) {
      throw new Ec2Error('UnsupportedOperation', `The action ${action} is not supported by this service yet; supported actions: ${Object.keys(ACTIONS).join(', ')}`);
    }
    throw new Ec2Error('InvalidAction', `The action ${action} is not valid for this web service`);
  }
  const dryRun = params.boolean('DryRun') ?? false;
  const input = await handler.validate(params, ctx);
  if (dryRun) throw new Ec2Error('DryRunOperation', DRY_RUN_MESSAGE);
  return handler.run(input, ctx);
}
