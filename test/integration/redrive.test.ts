/** Re-driving a failed task: back to the state the failed stage expects, with one history entry; anything else refused. */
import { failedStageOf, redriveTask } from '../../functions/host/redrive';
import { SqliteTaskStore } from '../../tasks/sqlite-store';
import { transition } from '../../tasks/state-machine';
import type { TaskDocument } from '../../tasks/task';

const now = new Date().toISOString();
function task(id: string): TaskDocument {
  return {
    id, kind: 'import-volume', accountId: '111122223333', state: 'pending-upload', statusMessage: '', progress: 0, bytesConverted: 0,
    request: { format: 'RAW', bytes: 1024, manifestUrl: 'http://127.0.0.1:1/m.xml', volumeSizeGiB: 1 }, artifacts: {},
    history: [{ at: now, from: null, to: 'pending-upload' }], createdAt: now, updatedAt: now, expiresAt: now, version: 1,
  } as TaskDocument;
}

test('a task failed at decrypt is re-driven from decrypt; a running one is refused', async () => {
  const store = SqliteTaskStore.open(':memory:');
  try {
    let doc = transition(task('import-vol-r0000001'), 'manifest-received');
    doc = transition(doc, 'failed', 'ServerError: the decrypt stage gave up: boom');
    await store.create(doc);
    expect(failedStageOf(doc).stage).toBe('decrypt');
    const event = await redriveTask(store, doc.id, 'decrypt', 'operator');
    expect(event.type).toBe('io.imaging.manifest-received');
    expect(event.data).toEqual({ taskId: doc.id, accountId: doc.accountId });
    const after = (await store.get(doc.id))!;
    expect(after.state).toBe('manifest-received');
    expect(after.history.at(-1)).toMatchObject({ from: 'failed', to: 'manifest-received', message: 're-driven from the decrypt stage by operator' });
    // Already where decrypt expects it: left alone, event emitted again.
    await expect(redriveTask(store, doc.id, 'decrypt', 'operator')).resolves.toBeDefined();
    await expect(redriveTask(store, doc.id, 'convert', 'operator')).rejects.toThrow(/is manifest-received; only a failed task/);
    await expect(redriveTask(store, 'import-vol-nope0000', 'convert', 'operator')).rejects.toThrow(/no task/);
    expect(() => failedStageOf(after)).toThrow(/not failed/);
  } finally {
    await store.close();
  }
});
