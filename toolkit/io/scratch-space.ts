/**
 * Local scratch disk, rationed: work that needs a scratch file reserves its bytes first, and
 * gives them back when the file is gone. A process holds at most `limitBytes` at once, and never
 * more than the filesystem has free. A reservation that does not fit now either fails at once
 * (`whenFull: 'fail'`: the caller's delivery is retried later) or waits until enough is given
 * back (`'wait'`); one larger than the whole limit always fails, since waiting cannot help.
 */
import { mkdtemp, rm, statfs } from 'fs/promises';
import { tmpdir } from 'os';
import { join } from 'path';

export interface ScratchSpaceOptions {
  /** Directory the scratch files go under (the OS temp directory by default). */
  dir?: string;
  limitBytes: number;
  whenFull: 'fail' | 'wait';
  /** Names the settings in messages (e.g. IMAGING_SCRATCH_LIMIT_MB), so an operator knows what to change. */
  settingNames?: { dir: string; limit: string; whenFull: string };
}

/** The scratch space could not be had: the message says how much was asked, what is left and what is configured. */
export class ScratchSpaceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScratchSpaceError';
  }
}

export interface ScratchReservation {
  /** A fresh directory of its own under the scratch directory. */
  readonly dir: string;
  /** Removes the directory and gives the bytes back (idempotent). */
  release(): Promise<void>;
}

const MiB = 1024 * 1024;
const mib = (bytes: number) => `${Math.ceil(bytes / MiB)} MiB`;

export class ScratchSpace {
  private held = 0;
  private readonly waiting: { bytes: number; wake(): void }[] = [];
  readonly dir: string;

  constructor(private readonly options: ScratchSpaceOptions) {
    this.dir = options.dir ?? tmpdir();
  }

  /** Bytes reserved now. */
  get inUse(): number {
    return this.held;
  }

  /**
   * Reserves `bytes` and makes a directory for them. `what` names the work in messages.
   * `signal` stops a wait.
   */
  async reserve(bytes: number, what: string, signal?: AbortSignal): Promise<ScratchReservation> {
    const names = this.options.settingNames ?? { dir: 'scratch dir', limit: 'scratch limit', whenFull: 'when full' };
    const { limitBytes } = this.options;
    if (bytes > limitBytes) {
      throw new ScratchSpaceError(
        `${what} needs ${mib(bytes)} of scratch space in ${this.dir}, more than the whole ${mib(limitBytes)} allowed (${names.limit}); raise it`,
      );
    }
    for (;;) {
      const free = await freeBytes(this.dir);
      const fitsLimit = this.held + bytes <= limitBytes;
      const fitsDisk = free === undefined || bytes <= free;
      if (fitsLimit && fitsDisk) break;
      const short = !fitsDisk
        ? `the filesystem of ${this.dir} (${names.dir}) has ${mib(free!)} free`
        : `${mib(this.held)} of the ${mib(limitBytes)} allowed (${names.limit}) is in use`;
      if (this.options.whenFull === 'fail') {
        throw new ScratchSpaceError(`${what} needs ${mib(bytes)} of scratch space and ${short}; failing this attempt (${names.whenFull}=fail)`);
      }
      if (signal?.aborted) throw new ScratchSpaceError(`${what} stopped waiting for ${mib(bytes)} of scratch space: ${short}`);
      // Woken when a reservation is released; the disk may also free up from outside, so look again now and then.
      await new Promise<void>((resolve) => {
        const entry = { bytes, wake: () => done() };
        const timer = setTimeout(() => done(), 5000);
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          const at = this.waiting.indexOf(entry);
          if (at >= 0) this.waiting.splice(at, 1);
          resolve();
        };
        signal?.addEventListener('abort', done);
        this.waiting.push(entry);
      });
    }
    this.held += bytes;
    let dir: string;
    try {
      dir = await mkdtemp(join(this.dir, 'imaging-scratch-'));
    } catch (error) {
      this.give(bytes);
      throw new ScratchSpaceError(`${what}: cannot make a scratch directory in ${this.dir} (${names.dir}): ${(error as Error).message}`);
    }
    let released = false;
    return {
      dir,
      release: async () => {
        if (released) return;
        released = true;
        await rm(dir, { recursive: true, force: true });
        this.give(bytes);
      },
    };
  }

  private give(bytes: number): void {
    this.held -= bytes;
    for (const waiter of this.waiting.splice(0)) waiter.wake();
  }
}

async function freeBytes(dir: string): Promise<number | undefined> {
  try {
    const stats = await statfs(dir);
    return stats.bavail * stats.bsize;
  } catch {
    return undefined;
  }
}

let processScratch: ScratchSpace | undefined;

/** The scratch space work of this process reserves from when it is given none of its own (set once at start). */
export function setProcessScratchSpace(space: ScratchSpace | undefined): void {
  processScratch = space;
}

/** The process's scratch space; unconfigured, the OS temp directory with no limit but the disk's. */
export function processScratchSpace(): ScratchSpace {
  processScratch ??= new ScratchSpace({ limitBytes: Number.MAX_SAFE_INTEGER, whenFull: 'fail' });
  return processScratch;
}
