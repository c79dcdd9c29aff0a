/**
 * Reusable memory for read steps: a step reads into a slab, inflates into the same slab (shared
 * memory the inflate workers write to directly), and gives the slab back when its bytes are
 * written. Nothing is allocated per step once the pool is warm, so no garbage piles up waiting
 * for the collector (V8 collects external memory only after ~64 MiB of it is dead).
 *
 * Every slab has the same size, the read plan's largest step, so any free slab fits any step and
 * none is ever dropped: the pool never holds more slabs than were in use at once. A step larger
 * than that (one huge compressed unit) gets memory of its own, dropped afterwards.
 */
export class SlabPool {
  private readonly free: SharedArrayBuffer[] = [];

  constructor(readonly slabBytes: number) {}

  take(bytes: number): SharedArrayBuffer {
    if (bytes > this.slabBytes) return new SharedArrayBuffer(bytes);
    return this.free.pop() ?? new SharedArrayBuffer(this.slabBytes);
  }

  give(slab: SharedArrayBuffer): void {
    if (slab.byteLength === this.slabBytes) this.free.push(slab);
  }
}
