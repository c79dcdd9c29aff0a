/** DescribeConversionTasks: the caller's tasks, all of them or the ones named. */
import type { TaskDocument } from '../../tasks/task';
import type { ActionHandler } from './action';
import { conversionTaskXml } from './conversion-task-xml';
import { checkTaskIdShape, unknownTaskIds } from './task-ids';

export const describeConversionTasks: ActionHandler<TaskDocument[]> = {
  async validate(params, ctx) {
    const ids = [...new Set(params.list('ConversionTaskId'))];
    ids.forEach(checkTaskIdShape);
    const found = await ctx.tasks.list({ accountId: ctx.caller.accountId, kinds: ['import-volume', 'import-instance'], ...(ids.length ? { ids } : {}) });
    // The store already filters by account; checking again here keeps isolation out of its hands alone.
    const owned = found.filter((task) => task.accountId === ctx.caller.accountId);
    const missing = ids.filter((id) => !owned.some((task) => task.id === id));
    if (missing.length) throw unknownTaskIds(missing);
    return owned;
  },

  async run(tasks) {
    return { conversionTasks: tasks.map(conversionTaskXml) };
  },
};
