/**
 * The disks of an imported instance as one group: the instance task converts DiskImage.1 and
 * names the volume tasks of DiskImage.2..N (`volumeTaskIds`), each of which names it back
 * (`partOf`). Pure functions on task documents, read by the stages that end a group and by the
 * gateway that shows and cancels one.
 */
import { rowOf } from '../pipeline/table';
import type { TaskDocument } from './task';

/** The state a disk waits in for register (the register row of the pipeline table). */
const REGISTER_EXPECTS: string = rowOf('register').expects;

/** The instance task a disk task belongs to (itself for an instance task with further disks); undefined for any other task. */
export function instanceTaskIdOf(task: TaskDocument): string | undefined {
  if (task.request.partOf) return task.request.partOf.taskId;
  if (task.kind === 'import-instance' && (task.request.instance?.volumeTaskIds?.length ?? 0) > 0) return task.id;
  return undefined;
}

/** Which DiskImage.N a task converts: 1 for the instance task, its `partOf.diskIndex` for a further disk. */
export function diskIndexOf(task: TaskDocument): number {
  return task.request.partOf?.diskIndex ?? 1;
}

/**
 * An instance task whose own disk is registered and which only waits for its other disks: no
 * stage works on it any more (its register has returned), so it may be ended at once.
 */
export function waitsForOtherDisks(task: TaskDocument): boolean {
  return task.state === REGISTER_EXPECTS && task.artifacts.volumeId !== undefined && (task.request.instance?.volumeTaskIds?.length ?? 0) > 0;
}

/**
 * Why an instance did not import, as its conversion task says: the disk that ended, named by
 * its DiskImage index and task id, and that disk's own reason, keeping the ClientError: /
 * ServerError: prefix in front where a user looks for it.
 */
export function instanceEndReason(disk: TaskDocument): string {
  const name = `disk ${diskIndexOf(disk)} (${disk.id})`;
  const message = disk.statusMessage || (disk.state === 'cancelled' ? 'cancelled' : 'failed');
  const prefixed = /^(ClientError|ServerError): (.*)$/s.exec(message);
  if (prefixed) return `${prefixed[1]}: ${name} did not import: ${prefixed[2]}`;
  return `${name} did not import: ${message}`;
}

/** The reason the other disks of an instance are cancelled when one of them ended. */
export function diskCancelledReason(disk: TaskDocument): string {
  return `Cancelled: disk ${diskIndexOf(disk)} (${disk.id}) of the instance did not import`;
}
