/**
 * Reusable memory for read steps: a step reads into a slab, inflates into the same slab (shared
 * memory the inflate workers write to directly), and gives the slab back when its bytes are
 * written. Nothing is allocated per step once the pool is warm, so no garbage piles up waiting
 * for the collector (V8 collects external memory only after ~64 MiB of it is dead).
 *
 * Slabs are sized to what steps need (rounded up to a MiB), and a step takes the smallest free
 * slab that fits. A slab given back is kept only while the free slabs and the slabs still in use
 * stay within `limitBytes` together; beyond that it is dropped.
 */
const ROUND = 1024 * 1024;

export class SlabPool {
  private readonly free: SharedArrayBuffer[] = [];
  private freeBytes = 0;

  constructor(private readonly limitBytes: number) {}

  /** A slab of at least `bytes`; its byteLength is what the step holds. */
  take(bytes: number): SharedArrayBuffer {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      if (this.free[i].byteLength >= bytes && (best < 0 || this.free[i].byteLength < this.free[best].byteLength)) best = i;
    }
    if (best < 0) return new SharedArrayBuffer(Math.max(ROUND, Math.ceil(bytes / ROUND) * ROUND));
    const [slab] = this.free.splice(best, 1);
    this.freeBytes -= slab.byteLength;
    return slab;
  }

  /** `inUseBytes`: what the caller's other slabs (not this one) hold now. */
  give(slab: SharedArrayBuffer, inUseBytes: number): void {
    if (inUseBytes + this.freeBytes + slab.byteLength > this.limitBytes) return;
    this.free.push(slab);
    this.freeBytes += slab.byteLength;
  }
}
