/**
 * The per-account storage quota of the image store (issue 11, item 7): what an account holds
 * (its volumes' and snapshots' images) plus what its other tasks hold or are writing, may not
 * pass IMAGING_ACCOUNT_STORAGE_QUOTA_GIB. A conversion is checked before it writes a byte,
 * against the image's virtual size (the raw output is that large, whatever the upload's size),
 * and again while it writes, so conversions of one account running side by side cannot pass
 * the quota together.
 */
import { isTerminal } from '../../tasks/state-machine';
import type { TaskDocument } from '../../tasks/task';
import type { TaskStore } from '../../tasks/store';
import type { ByteSink } from '../../toolkit/io/sink';
import { ClientError } from '../errors';

const GiB = 1024 ** 3;
/** At most this many bytes written between two looks at the account's other usage. */
const RECHECK_BYTES = 64 * 1024 ** 2;

const MiB = 1024 ** 2;
const trimmed = (n: number) => n.toFixed(2).replace(/\.?0+$/, '');
/** The quota as the operator set it, in GiB. */
const gib = (bytes: number) => `${trimmed(bytes / GiB)} GiB`;
/** A usage figure, in the unit that reads best. */
const human = (bytes: number) => (bytes >= GiB ? gib(bytes) : bytes >= MiB ? `${trimmed(bytes / MiB)} MiB` : `${bytes} bytes`);

export class AccountStorageQuota {
  constructor(
    private readonly tasks: TaskStore,
    private readonly task: Pick<TaskDocument, 'id' | 'accountId'>,
    readonly quotaBytes: number,
  ) {}

  /**
   * Bytes of the image store the account holds besides this task: images of its volumes,
   * snapshots and bundle images, converted images of its unfinished tasks, and what its other conversions wrote so far.
   */
  async usedByOthers(): Promise<number> {
    const objects = new Map<string, number>();
    // An imported image's bytes are its snapshot's (the same object, counted once); an image
    // registered from a bundle holds bytes of its own.
    for (const kind of ['volume', 'snapshot', 'image'] as const) {
      for (const resource of await this.tasks.listResources({ accountId: this.task.accountId, kind })) {
        if ('image' in resource && resource.image) objects.set(`${resource.image.bucket}/${resource.image.key}`, resource.image.size);
      }
    }
    let converting = 0;
    for (const other of await this.tasks.list({ accountId: this.task.accountId })) {
      if (other.id === this.task.id || isTerminal(other.state)) continue;
      const image = other.artifacts.image;
      if (image) objects.set(`${image.bucket}/${image.key}`, image.size);
      else converting += other.bytesConverted;
    }
    return [...objects.values()].reduce((sum, size) => sum + size, converting);
  }

  /**
   * Refuses a conversion whose output (`bytes`) would take the account over its quota; resolves
   * to what the account uses besides.
   */
  async check(bytes: number, what: string): Promise<number> {
    const others = await this.usedByOthers();
    if (others + bytes > this.quotaBytes) {
      throw new ClientError(
        `${what} ${human(bytes)}, and this account already uses ${human(others)} of the image store: ` +
          `together over the account's storage quota of ${gib(this.quotaBytes)} (IMAGING_ACCOUNT_STORAGE_QUOTA_GIB); ` +
          'delete volumes or snapshots you no longer need, or ask the operator for a larger quota',
      );
    }
    return others;
  }

  /** `inner`, with the quota checked as bytes go into it. */
  watching(inner: ByteSink): ByteSink {
    let written = 0;
    let checkedAt = 0;
    // What was left under the quota at the last look: crossing it means looking again.
    let headroom = -1;
    const count = async (length: number) => {
      written += length;
      if (written <= headroom && written - checkedAt < RECHECK_BYTES) return;
      checkedAt = written;
      headroom = this.quotaBytes - (await this.check(written, 'the converted image has reached'));
    };
    return {
      name: inner.name,
      write: async (chunk) => {
        await count(chunk.length);
        await inner.write(chunk);
      },
      writeZeros: async (length) => {
        await count(length);
        await inner.writeZeros(length);
      },
      finish: () => inner.finish(),
      abort: () => inner.abort(),
    };
  }
}
