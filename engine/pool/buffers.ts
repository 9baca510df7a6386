/**
 * Task buffers, recycled. An item task's items and outputs live in one ArrayBuffer (layout.ts)
 * that moves to the worker and back (transferred, never copied); once the main thread has read
 * the outputs it zeroes the buffer (it held plaintexts) and keeps it for a later task. So under
 * load nothing is allocated per task, and the garbage collectors of the main thread and the
 * workers see no stream of fresh external memory.
 *
 * Buffers come in power-of-two size classes from 4 KiB. What is kept is bounded (`maxRetained`
 * bytes). A returned buffer that does not fit displaces buffers of the classes least recently
 * taken: otherwise a burst of large tasks (batches of 512) fills the budget with buffers no later
 * task asks for, and every small task after it allocates and zero-fills a fresh one (measured:
 * the 1 KiB AES single-call bench fell from about 235k to 165k operations/s after a batch case).
 *
 * (A SharedArrayBuffer arena was measured first: V8 fills and copies shared memory with relaxed
 * atomic stores, 40× slower for `fill`, which cost the main thread 12 % of its time in the 1 KiB
 * AES batch case.)
 */

const MIN_CLASS = 4096;

/** The size class that holds `bytes`. */
export function sizeClass(bytes: number): number {
  let size = MIN_CLASS;
  while (size < bytes) size *= 2;
  return size;
}

/** See the module comment. Main thread only. */
export class BufferPool {
  readonly maxRetained: number;
  readonly #free = new Map<number, ArrayBuffer[]>();
  /** When each size class was last taken (a counter, not a clock). */
  readonly #lastTaken = new Map<number, number>();
  #takes = 0;
  #retained = 0;

  constructor(maxRetained: number) {
    this.maxRetained = maxRetained;
  }

  /** Bytes kept for reuse now. */
  get retained(): number {
    return this.#retained;
  }

  /** A zeroed buffer of at least `bytes`. */
  take(bytes: number): ArrayBuffer {
    const size = sizeClass(bytes);
    this.#lastTaken.set(size, ++this.#takes);
    const buffer = this.#free.get(size)?.pop();
    if (buffer === undefined) return new ArrayBuffer(size);
    this.#retained -= size;
    return buffer;
  }

  /** Zeroes the first `used` bytes of `buffer` (all of it by default) and keeps it, if there is room. */
  give(buffer: ArrayBuffer, used = buffer.byteLength): void {
    if (buffer.byteLength === 0) return; // detached
    new Uint8Array(buffer, 0, Math.min(used, buffer.byteLength)).fill(0);
    const size = buffer.byteLength;
    if (size !== sizeClass(size) || size > this.maxRetained) return;
    if (this.#retained + size > this.maxRetained && !this.#makeRoom(size)) return;
    let list = this.#free.get(size);
    if (list === undefined) {
      list = [];
      this.#free.set(size, list);
    }
    list.push(buffer);
    this.#retained += size;
  }

  /** Drops kept buffers of classes taken less recently than `size` until it fits; false if it cannot. */
  #makeRoom(size: number): boolean {
    const mine = this.#lastTaken.get(size) ?? 0;
    const older = [...this.#free.keys()]
      .filter((other) => other !== size && (this.#lastTaken.get(other) ?? 0) < mine)
      .sort((a, b) => (this.#lastTaken.get(a) ?? 0) - (this.#lastTaken.get(b) ?? 0));
    for (const other of older) {
      const kept = this.#free.get(other)!;
      while (kept.length > 0 && this.#retained + size > this.maxRetained) {
        kept.pop();
        this.#retained -= other;
      }
      if (this.#retained + size <= this.maxRetained) return true;
    }
    return false;
  }
}
