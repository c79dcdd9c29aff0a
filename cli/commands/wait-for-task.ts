/**
 * Follows a conversion task until it ends, with a progress bar, as `import-volume --wait` does;
 * an instance with several disks shows one bar per disk (each volume's own progress and status).
 */
import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import type { Ec2Client } from '../ec2-client';
import { describeConversionTasks, type ConversionTaskView } from './conversion-tasks';

/** What each bar shows: the task as a whole, or each disk of an instance. */
function rows(task: ConversionTaskView): { name: string; progress: number; state: string; message: string }[] {
  if (!task.disks) return [{ name: 'converting', progress: task.progress ?? 0, state: task.state, message: task.statusMessage }];
  return task.disks.map((disk, i) => ({
    name: `disk ${i + 1}`,
    // A disk that completed shows full, whatever its last progress report said.
    progress: disk.status === 'completed' ? 100 : (disk.progress ?? 0),
    state: disk.status,
    message: disk.statusMessage ?? '',
  }));
}

export async function waitForConversionTask(ec2: Ec2Client, taskId: string, options: { progress: boolean; pollMs?: number }): Promise<ConversionTaskView> {
  const multi = options.progress ? new MultiBar({ format: '{name} |{bar}| {percentage}% | {state} {message}', hideCursor: true }, Presets.shades_classic) : undefined;
  const bars: SingleBar[] = [];
  try {
    for (;;) {
      const [task] = await describeConversionTasks(ec2, [taskId]);
      if (multi) {
        for (const [i, row] of rows(task).entries()) {
          bars[i] ??= multi.create(100, 0, { name: row.name, state: row.state, message: '' });
          bars[i].update(row.progress, { name: row.name, state: row.state, message: row.message });
        }
      }
      if (task.state === 'completed' || task.state === 'cancelled') return task;
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1000));
    }
  } finally {
    multi?.stop();
  }
}
