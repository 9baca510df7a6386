/**
 * The pool's shared memory: one SharedArrayBuffer of fixed size that the main thread and every
 * crypto worker see. A task's items and outputs live in a region of it (layout.ts), so a task
 * message carries two numbers instead of a transferred buffer: no per-task allocation, no
 * external-memory churn for the garbage collectors of four isolates, and a hard bound in bytes on
 * what the pool holds in flight.
 *
 * Only the main thread allocates. First fit over a free list kept sorted by offset, merged on
 * free, so regions are reused from the low end and the pages the OS keeps resident stay those the
 * load needed.
 */

/** Region offsets and sizes are multiples of this, so Uint32Array views line up. */
export const ARENA_ALIGN = 8;

const align = (n: number): number => Math.ceil(n / ARENA_ALIGN) * ARENA_ALIGN;

/** See the module comment. */
export class Arena {
  readonly buffer: SharedArrayBuffer;
  readonly size: number;
  /** Free blocks, sorted by offset, never adjacent (merged on free). */
  readonly #free: Array<{ offset: number; size: number }>;
  #used = 0;

  constructor(size: number) {
    this.size = align(size);
    this.buffer = new SharedArrayBuffer(this.size);
    this.#free = [{ offset: 0, size: this.size }];
  }

  /** Bytes allocated now. */
  get used(): number {
    return this.#used;
  }

  /** The size a request of `bytes` takes once aligned. */
  static sizeOf(bytes: number): number {
    return align(Math.max(bytes, 1));
  }

  /** Allocates `bytes`; returns the offset, or undefined when no free block is large enough. */
  alloc(bytes: number): number | undefined {
    const size = Arena.sizeOf(bytes);
    for (let i = 0; i < this.#free.length; i++) {
      const block = this.#free[i]!;
      if (block.size < size) continue;
      const offset = block.offset;
      if (block.size === size) this.#free.splice(i, 1);
      else {
        block.offset += size;
        block.size -= size;
      }
      this.#used += size;
      return offset;
    }
    return undefined;
  }

  /** Returns a region (`bytes` as given to alloc) after zeroing it: it may have held plaintext. */
  free(offset: number, bytes: number): void {
    const size = Arena.sizeOf(bytes);
    new Uint8Array(this.buffer, offset, size).fill(0);
    this.#used -= size;
    let i = 0;
    while (i < this.#free.length && this.#free[i]!.offset < offset) i++;
    const prev = i > 0 ? this.#free[i - 1] : undefined;
    const next = this.#free[i];
    if (prev !== undefined && prev.offset + prev.size > offset) throw new Error('arena: double free');
    if (next !== undefined && offset + size > next.offset) throw new Error('arena: double free');
    if (prev !== undefined && prev.offset + prev.size === offset) {
      prev.size += size;
      if (next !== undefined && prev.offset + prev.size === next.offset) {
        prev.size += next.size;
        this.#free.splice(i, 1);
      }
    } else if (next !== undefined && offset + size === next.offset) {
      next.offset = offset;
      next.size += size;
    } else {
      this.#free.splice(i, 0, { offset, size });
    }
  }
}
