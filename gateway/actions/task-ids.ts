/** Conversion task ids as clients send them: shape check first, then ownership. */
import type { TaskDocument } from '../../tasks/task';
import { Ec2Error } from '../errors';

const TASK_ID = /^import-[a-z]+-[0-9a-f]{8,17}$/;

export function checkTaskIdShape(id: string): void {
  if (!TASK_ID.test(id)) {
    throw new Ec2Error('InvalidConversionTaskId.Malformed', `The conversion task ID '${id}' is malformed; conversion task IDs look like import-vol-1a2b3c4d`);
  }
}

/** Another account's task is reported exactly like a missing one, so ids reveal nothing. */
export const unknownTaskIds = (ids: string[]) =>
  new Ec2Error('InvalidConversionTaskId', ids.length === 1 ? `The conversion task ID '${ids[0]}' does not exist` : `The conversion task IDs ${ids.map((id) => `'${id}'`).join(', ')} do not exist`);

export function isOwnedBy(task: TaskDocument | undefined, accountId: string): task is TaskDocument {
  return task !== undefined && task.accountId === accountId;
}
