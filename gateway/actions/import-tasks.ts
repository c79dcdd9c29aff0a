/** DescribeImportImageTasks, DescribeImportSnapshotTasks and CancelImportTask. */
import { isTerminal, updateTask } from '../../tasks/state-machine';
import { transition } from '../../tasks/state-machine';
import type { TaskDocument, TaskKind } from '../../tasks/task';
import { isAdminAccount } from '../accounts';
import { Ec2Error } from '../errors';
import type { QueryParams } from '../query-request';
import type { ActionContext, ActionHandler } from './action';
import { applyFilters, pageOfTasks, parseFilters, parsePageRequest, type Filters, type PageRequest } from './describe-common';
import { importImageTaskXml, importSnapshotTaskXml, importTaskStatus } from './import-task-xml';
import type { XmlObject } from '../xml';

const IMPORT_TASK_ID = /^import-(ami|snap)-[0-9a-f]{8,17}$/;
/** euca's `verbose`: an administrator naming it among the ids sees every account's tasks. */
export const VERBOSE = 'verbose';

export function checkImportTaskIdShape(id: string): void {
  if (!IMPORT_TASK_ID.test(id)) {
    throw new Ec2Error('InvalidConversionTaskId.Malformed', `The import task ID '${id}' is malformed; import task IDs look like import-ami-0123456789abcdef0 or import-snap-0123456789abcdef0`);
  }
}

/** Another account's task is reported exactly like a missing one. */
export const unknownImportTasks = (ids: string[]) =>
  new Ec2Error('InvalidConversionTaskId', ids.length === 1 ? `The import task ID '${ids[0]}' does not exist` : `The import task IDs ${ids.map((id) => `'${id}'`).join(', ')} do not exist`);

interface DescribeInput {
  tasks: TaskDocument[];
  nextToken?: string;
}

/** Ids named, and whether the caller asked (and may) see all accounts. */
async function idsAndScope(params: QueryParams, ctx: ActionContext): Promise<{ ids: string[]; allAccounts: boolean }> {
  let ids = [...new Set(params.list('ImportTaskId'))];
  let allAccounts = false;
  if (ids.includes(VERBOSE) && (await isAdminAccount(ctx.tasks, ctx.caller.accountId))) {
    allAccounts = true;
    ids = ids.filter((id) => id !== VERBOSE);
  }
  ids.forEach(checkImportTaskIdShape);
  return { ids, allAccounts };
}

function describeImportTasks(kind: TaskKind, render: (task: TaskDocument) => XmlObject, setName: string): ActionHandler<DescribeInput> {
  return {
    async validate(params, ctx) {
      const { ids, allAccounts } = await idsAndScope(params, ctx);
      const filters: Filters = parseFilters(params, 'Filters', ['task-state']);
      const paging: PageRequest = parsePageRequest(params);
      const accountId = allAccounts ? undefined : ctx.caller.accountId;
      const query = { ...(accountId ? { accountId } : {}), kinds: [kind], ...(ids.length ? { ids } : {}) };
      const keep = (task: TaskDocument) =>
        (allAccounts || task.accountId === ctx.caller.accountId) && applyFilters([task], filters, (t, name) => (name === 'task-state' ? [importTaskStatus(t).status] : [])).length === 1;
      if (ids.length) {
        const named = await ctx.tasks.list(query);
        // The store filters by account; checking again here keeps isolation out of its hands alone.
        const missing = ids.filter((id) => !named.some((t) => t.id === id && (allAccounts || t.accountId === ctx.caller.accountId)));
        if (missing.length) throw unknownImportTasks(missing);
        if (paging.maxResults === undefined && !paging.nextToken) return { tasks: named.filter(keep) };
      }
      const paged = await pageOfTasks(ctx.tasks, query, keep, paging, { kind, account: ctx.caller.accountId, allAccounts, ids, filters: [...filters] });
      return { tasks: paged.items, nextToken: paged.nextToken };
    },
    async run({ tasks, nextToken }) {
      return { [setName]: tasks.map(render), nextToken };
    },
  };
}

export const describeImportImageTasks = describeImportTasks('import-image', importImageTaskXml, 'importImageTaskSet');
export const describeImportSnapshotTasks = describeImportTasks('import-snapshot', importSnapshotTaskXml, 'importSnapshotTaskSet');

const MAX_REASON_CHARS = 255;

interface CancelInput {
  task: TaskDocument;
  reason?: string;
}

export const cancelImportTask: ActionHandler<CancelInput> = {
  async validate(params, ctx) {
    const id = params.requiredString('ImportTaskId');
    checkImportTaskIdShape(id);
    const reason = params.string('CancelReason') || undefined;
    if (reason !== undefined && reason.length > MAX_REASON_CHARS) throw new Ec2Error('InvalidParameterValue', `CancelReason can be at most ${MAX_REASON_CHARS} characters`);
    const task = await ctx.tasks.get(id);
    if (!task || task.accountId !== ctx.caller.accountId || (task.kind !== 'import-image' && task.kind !== 'import-snapshot')) throw unknownImportTasks([id]);
    if (isTerminal(task.state)) throw new Ec2Error('IncorrectState', `The import task ${id} is already ${importTaskStatus(task).status} and cannot be cancelled`);
    return { task, reason };
  },

  async run({ task, reason }, ctx) {
    const previousState = importTaskStatus(task).status;
    let finished: TaskDocument | undefined;
    const message = reason ?? 'Canceled by user';
    const after = await updateTask(ctx.tasks, task.id, (doc) => {
      if (isTerminal(doc.state)) {
        finished = doc;
        return undefined;
      }
      const now = ctx.now();
      const marked = doc.cancelRequested ? doc : { ...doc, cancelRequested: { at: now.toISOString(), reason: message }, updatedAt: now.toISOString() };
      // Nothing works on a task still waiting for its source: it ends here.
      if (doc.state === 'pending-upload') return transition(marked, 'cancelled', message, now);
      return marked === doc ? undefined : marked;
    });
    if (finished) throw new Ec2Error('IncorrectState', `The import task ${task.id} is already ${importTaskStatus(finished).status} and cannot be cancelled`);
    return { importTaskId: task.id, previousState, state: after ? importTaskStatus(after).status : 'deleting' };
  },
};
