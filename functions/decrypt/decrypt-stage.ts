/**
 * Stage 2. For EC2 bundles this verifies, decrypts and unpacks; for plain imports (this
 * version) it verifies every part's size against its byte range and describes the source as
 * the ordered parts, so the converter can read them as one file.
 */
import { mapLimit } from '../../toolkit/map-limit';
import { headObjectSize } from '../object-fetch';
import { advanceToNext, taskStage } from '../task-step';
import { ClientError } from '../errors';
import { unbundleToStore } from '../bundle/unbundle-to-store';

const GiB = 1024 ** 3;

export const decryptStage = taskStage('decrypt', {
  async work(task, { taskId }, ctx) {
    if (task.request.bundle) {
      // The task records kernel/ramdisk (request.bundle) and the layout (artifacts.layout) for the validate stage.
      const { image, layout } = await unbundleToStore(ctx, task);
      await advanceToNext(ctx, 'decrypt', taskId, (doc) => ({
        artifacts: { ...doc.artifacts, image, ...(layout ? { layout } : {}) },
        bytesConverted: image.size,
      }));
      return;
    }
    const manifest = task.artifacts.manifest;
    if (!manifest) throw new Error(`task ${taskId} reached decrypt without a manifest`);
    const sizes = await mapLimit(manifest.parts, 16, async (part) => {
      const head = await headObjectSize(part.headUrl);
      if (head.kind === 'missing') throw new ClientError(`part ${part.index} (${part.key}) is no longer in object storage`);
      if (head.kind === 'unavailable') throw new Error(`part ${part.index}: ${head.reason}`); // transient: retry
      const expected = part.end - part.start + 1;
      if (head.value !== expected) {
        throw new ClientError(`part ${part.index} (${part.key}) is ${head.value} bytes but its byte range ${part.start}-${part.end} needs ${expected}`);
      }
      return head.value;
    });
    const request = task.request;
    if (request.format === 'RAW' && request.bytes !== manifest.size) {
      throw new ClientError(`Image.Bytes is ${request.bytes} but the import manifest describes a file of ${manifest.size} bytes`);
    }
    if (request.format === 'RAW' && manifest.size > request.volumeSizeGiB * GiB) {
      throw new ClientError(`the image is ${manifest.size} bytes, larger than the requested volume of ${request.volumeSizeGiB} GiB`);
    }
    const source = {
      format: request.format,
      size: manifest.size,
      parts: manifest.parts.map((p, i) => ({ getUrl: p.getUrl, size: sizes[i] })),
    };
    await advanceToNext(
      ctx, 'decrypt', taskId,
      (doc) => ({ artifacts: { ...doc.artifacts, source } }),
    );
  },
});
