/**
 * Operator commands against a distributed deployment's NATS and task store:
 *   imaging events list-dead [--json]     the events stages gave up on
 *   imaging events replay ID|--all        re-drive their tasks and publish them again (new event ids)
 *   imaging tasks retry TASK              re-drive a failed task from its last good step
 */
import { DeadLetterStream, type DeadLetter } from '../../events/dead-letters';
import { JetStreamBus } from '../../events/jetstream-bus';
import { failedStageOf, redriveTask, RedriveError } from '../../functions/host/redrive';
import { openTaskStore } from '../../tasks/open-store';
import type { TaskStore } from '../../tasks/store';

export interface OperatorOptions {
  natsUrl?: string;
  mongodbUri?: string;
  mongodbDb?: string;
}

const ACTOR = 'operator';

function natsUrlOf(options: OperatorOptions): string {
  const url = options.natsUrl || process.env.IMAGING_NATS_URL;
  if (!url) throw new RedriveError('IMAGING_NATS_URL (or --nats-url) is not set');
  return url;
}

async function openStore(options: OperatorOptions): Promise<TaskStore> {
  const uri = options.mongodbUri || process.env.IMAGING_MONGODB_URI;
  if (!uri) throw new RedriveError('IMAGING_MONGODB_URI (or --mongodb-uri) is not set');
  return openTaskStore(uri, { mongoDbName: options.mongodbDb || process.env.IMAGING_MONGODB_DB || 'imaging' });
}

function taskIdOf(letter: DeadLetter): string {
  const data = letter.event.data as { taskId?: unknown } | undefined;
  return typeof data?.taskId === 'string' ? data.taskId : '';
}

export async function listDeadCommand(options: OperatorOptions & { json?: boolean }): Promise<string> {
  const stream = await DeadLetterStream.connect(natsUrlOf(options));
  try {
    const letters = await stream.list();
    if (options.json) {
      return JSON.stringify(letters.map((l) => ({ id: l.seq, eventId: l.event.id, type: l.event.type, stage: l.stage, taskId: taskIdOf(l), at: l.at, reason: l.reason, data: l.event.data })), null, 2) + '\n';
    }
    if (letters.length === 0) return 'no dead letters\n';
    return letters.map((l) => `${l.seq}\t${l.stage}\t${taskIdOf(l)}\t${l.at}\t${l.event.id}\t${l.reason}`).join('\n') + '\n';
  } finally {
    await stream.close();
  }
}

/** Replays one letter (by sequence or event id) or all; each replayed letter leaves the stream. */
export async function replayCommand(id: string | undefined, options: OperatorOptions & { all?: boolean }): Promise<string> {
  if (!id && !options.all) throw new RedriveError('name a dead letter (its id or event id) or pass --all');
  const stream = await DeadLetterStream.connect(natsUrlOf(options));
  const tasks = await openStore(options);
  const bus = await JetStreamBus.connect({ servers: natsUrlOf(options), name: 'imaging-operator' });
  const lines: string[] = [];
  let failures = 0;
  try {
    const letters = options.all ? await stream.list() : [await stream.find(id!)].filter((l): l is DeadLetter => !!l);
    if (!options.all && letters.length === 0) throw new RedriveError(`no dead letter ${id}`);
    for (const letter of letters) {
      try {
        const event = await redriveTask(tasks, taskIdOf(letter), letter.stage, ACTOR, letter.event.data as object);
        await bus.publish(event);
        await stream.remove(letter.seq);
        lines.push(`replayed ${letter.seq} (${letter.stage}, task ${taskIdOf(letter)}) as event ${event.id}`);
      } catch (error) {
        failures++;
        lines.push(`not replayed ${letter.seq} (${letter.stage}, task ${taskIdOf(letter)}): ${(error as Error).message}`);
      }
    }
  } finally {
    await bus.close();
    await tasks.close();
    await stream.close();
  }
  if (failures) throw new RedriveError(lines.join('\n'));
  return lines.join('\n') + (lines.length ? '\n' : 'no dead letters\n');
}

export async function retryTaskCommand(taskId: string, options: OperatorOptions): Promise<string> {
  const tasks = await openStore(options);
  try {
    const doc = await tasks.get(taskId);
    if (!doc) throw new RedriveError(`no task ${taskId}`);
    const row = failedStageOf(doc);
    const event = await redriveTask(tasks, taskId, row.stage, ACTOR);
    const bus = await JetStreamBus.connect({ servers: natsUrlOf(options), name: 'imaging-operator' });
    try {
      await bus.publish(event);
    } finally {
      await bus.close();
    }
    return `task ${taskId} re-driven from the ${row.stage} stage (event ${event.id})\n`;
  } finally {
    await tasks.close();
  }
}
