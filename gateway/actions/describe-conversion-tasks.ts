/**
 * DescribeConversionTasks: the caller's tasks, all of them or the ones named. The volume tasks
 * of an ImportInstance's further disks are not conversion tasks of their own: they are shown as
 * volumes of the instance's task, and their ids are not found here.
 */
import type { TaskStore } from '../../tasks/store';
import { CONVERSION_TASK_KINDS, type TaskDocument } from '../../tasks/task';
import type { ActionHandler } from './action';
import { conversionTaskXml } from './conversion-task-xml';
import { checkTaskIdShape, unknownTaskIds } from './task-ids';

interface Described {
  tasks: TaskDocument[];
  members: TaskDocument[];
}

export const describeConversionTasks: ActionHandler<Described> = {
  async validate(params, ctx) {
    const ids = [...new Set(params.list('ConversionTaskId'))];
    ids.forEach(checkTaskIdShape);
    const found = await ctx.tasks.list({ accountId: ctx.caller.accountId, kinds: CONVERSION_TASK_KINDS, ...(ids.length ? { ids } : {}) });
    // The store already filters by account; checking again here keeps isolation out of its hands alone.
    const owned = found.filter((task) => task.accountId === ctx.caller.accountId && !task.request.partOf);
    const missing = ids.filter((id) => !owned.some((task) => task.id === id));
    if (missing.length) throw unknownTaskIds(missing);
    return { tasks: owned, members: await membersOf(ctx.tasks, owned, ctx.caller.accountId) };
  },

  async run({ tasks, members }) {
    return { conversionTasks: tasks.map((task) => conversionTaskXml(task, members)) };
  },
};

/** The volume tasks of the instance tasks among `tasks`, in one read. */
export async function membersOf(store: TaskStore, tasks: TaskDocument[], accountId: string): Promise<TaskDocument[]> {
  const ids = tasks.flatMap((t) => t.request.instance?.volumeTaskIds ?? []);
  if (ids.length === 0) return [];
  const found = await store.list({ accountId, ids });
  return found.filter((m) => m.accountId === accountId && m.request.partOf !== undefined);
}
