/** Follows a conversion task until it ends, with a progress bar, as `import-volume --wait` does. */
import { Presets, SingleBar } from 'cli-progress';
import type { Ec2Client } from '../ec2-client';
import { describeConversionTasks, type ConversionTaskView } from './conversion-tasks';

export async function waitForConversionTask(ec2: Ec2Client, taskId: string, options: { progress: boolean; pollMs?: number }): Promise<ConversionTaskView> {
  const bar = options.progress ? new SingleBar({ format: 'converting |{bar}| {percentage}% | {state} {message}', hideCursor: true }, Presets.shades_classic) : undefined;
  bar?.start(100, 0, { state: 'active', message: '' });
  try {
    for (;;) {
      const [task] = await describeConversionTasks(ec2, [taskId]);
      bar?.update(task.progress ?? 0, { state: task.state, message: task.statusMessage });
      if (task.state === 'completed' || task.state === 'cancelled') return task;
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1000));
    }
  } finally {
    bar?.stop();
  }
}
