/**
 * A BundleInstance task as EC2 reports it. The task moves through the export row of the
 * pipeline table; what it is doing inside that step (writing parts, writing the manifest) is its
 * status message, set by the export stage, from which the EC2 state follows.
 */
import type { TaskDocument } from './task';

export const BUNDLE_PENDING_MESSAGE = 'pending';
export const BUNDLING_MESSAGE = 'bundling';
export const STORING_MESSAGE = 'storing';

export type BundleTaskState = 'pending' | 'waiting-for-shutdown' | 'bundling' | 'storing' | 'cancelling' | 'complete' | 'failed';

/** The state EC2 reports for a bundle task. An imported instance is stopped, so never waiting-for-shutdown. */
export function bundleTaskState(task: TaskDocument): BundleTaskState {
  switch (task.state) {
    case 'completed':
      return 'complete';
    case 'failed':
    case 'cancelled':
      return 'failed';
    case 'cancelling':
      return 'cancelling';
    default:
      if (task.cancelRequested) return 'cancelling';
      if (task.statusMessage === STORING_MESSAGE) return 'storing';
      if (task.statusMessage === BUNDLING_MESSAGE) return 'bundling';
      return 'pending';
  }
}
