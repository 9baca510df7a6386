/**
 * The layout of one item task's buffer (buffers.ts): the items' input fields, and a slot per item
 * for its output, sized by `outputBound` before the task is sent. The main thread writes the
 * inputs and the slot table; the worker reads the inputs and writes each item's output, length
 * and status into the same buffer, which moves back; the main thread reads the outputs and
 * recycles the buffer.
 *
 * Layout (u32 little-endian words, from the buffer's start):
 *   count, fields,
 *   inputOffsets[count * fields + 1]   field f of item i: [in[i*fields+f], in[i*fields+f+1])
 *   outputOffsets[count + 1]           item i's slot: [out[i], out[i+1])
 *   outputLengths[count]
 *   status[count] (bytes), padded to 8
 *   input bytes, then output bytes.
 */
const ALIGN = 8;

/** Reads one field of one item; undefined is an empty field. */
export type FieldReader = (item: number, field: number) => Uint8Array | undefined;

const EMPTY = Buffer.alloc(0);

function headerBytes(count: number, fields: number): number {
  const words = 2 + (count * fields + 1) + (count + 1) + count;
  return Math.ceil((words * 4 + count) / ALIGN) * ALIGN;
}

/** Sizes of a task before it is written: what to allocate. */
export interface TaskSize {
  count: number;
  fields: number;
  /** Input bytes of all items. */
  input: number;
  /** Output capacity of all items. */
  output: number;
  /** The whole region. */
  bytes: number;
}

/** Measures a task of `count` items; `bound(i, inputBytes)` is item i's output capacity. */
export function measureTask(
  count: number,
  fields: number,
  read: FieldReader,
  bound: (inputBytes: number) => number,
): TaskSize {
  let input = 0;
  let output = 0;
  for (let i = 0; i < count; i++) {
    let bytes = 0;
    for (let f = 0; f < fields; f++) bytes += read(i, f)?.byteLength ?? 0;
    input += bytes;
    output += bound(bytes);
  }
  return { count, fields, input, output, bytes: headerBytes(count, fields) + input + output };
}

/** Writes a measured task into `memory` (zeroed, at least `size.bytes` long). */
export function writeTask(
  memory: ArrayBuffer,
  size: TaskSize,
  read: FieldReader,
  bound: (inputBytes: number) => number,
): void {
  const { count, fields } = size;
  const head = headerBytes(count, fields);
  const words = new Uint32Array(memory, 0, 2 + (count * fields + 1) + (count + 1));
  const input = new Uint8Array(memory, head, size.input);
  words[0] = count;
  words[1] = fields;
  const inBase = 2;
  const outBase = inBase + count * fields + 1;
  let at = 0;
  let out = 0;
  for (let i = 0; i < count; i++) {
    const start = at;
    for (let f = 0; f < fields; f++) {
      words[inBase + i * fields + f] = at;
      const bytes = read(i, f);
      if (bytes !== undefined && bytes.byteLength > 0) {
        input.set(bytes, at);
        at += bytes.byteLength;
      }
    }
    words[outBase + i] = out;
    out += bound(at - start);
  }
  words[inBase + count * fields] = at;
  words[outBase + count] = out;
}

/** A task's buffer as a worker or the main thread sees it. */
export class TaskRegion {
  readonly count: number;
  readonly fields: number;
  readonly #memory: ArrayBuffer;
  readonly #words: Uint32Array;
  readonly #lengths: Uint32Array;
  readonly #status: Uint8Array;
  readonly #inStart: number;
  readonly #outStart: number;
  readonly #outBase: number;

  constructor(memory: ArrayBuffer) {
    const head = new Uint32Array(memory, 0, 2);
    this.count = head[0]!;
    this.fields = head[1]!;
    const { count, fields } = this;
    const offsetWords = 2 + (count * fields + 1) + (count + 1);
    this.#memory = memory;
    this.#words = new Uint32Array(memory, 0, offsetWords);
    this.#lengths = new Uint32Array(memory, offsetWords * 4, count);
    this.#status = new Uint8Array(memory, (offsetWords + count) * 4, count);
    this.#outBase = 2 + count * fields + 1;
    this.#inStart = headerBytes(count, fields);
    this.#outStart = this.#inStart + this.#words[2 + count * fields]!;
  }

  /** Field `field` of item `item`: a view into the buffer (empty when absent). */
  field(item: number, field: number): Buffer {
    const slot = 2 + item * this.fields + field;
    const start = this.#words[slot]!;
    const end = this.#words[slot + 1]!;
    return start === end ? EMPTY : Buffer.from(this.#memory, this.#inStart + start, end - start);
  }

  /** Writes item `item`'s output; false when it does not fit its slot (nothing written). */
  setOutput(item: number, bytes: Uint8Array): boolean {
    const start = this.#words[this.#outBase + item]!;
    const capacity = this.#words[this.#outBase + item + 1]! - start;
    if (bytes.byteLength > capacity) return false;
    new Uint8Array(this.#memory, this.#outStart + start, bytes.byteLength).set(bytes);
    this.#lengths[item] = bytes.byteLength;
    return true;
  }

  /** Sets item `item`'s status (protocol.ts ITEM_*); 0 (ok) is the initial value. */
  setStatus(item: number, status: number): void {
    this.#status[item] = status;
  }

  status(item: number): number {
    return this.#status[item]!;
  }

  /** Item `item`'s output: a view into the buffer, valid until it is recycled. */
  output(item: number): Buffer {
    const start = this.#words[this.#outBase + item]!;
    return Buffer.from(this.#memory, this.#outStart + start, this.#lengths[item]!);
  }

  /** Bytes in use: the header, the inputs and the outputs written. */
  get used(): number {
    return this.#outStart + this.#words[this.#outBase + this.count]!;
  }

  /** Zeroes the inputs (they may be plaintexts) once the worker has run them. */
  wipeInputs(): void {
    const length = this.#outStart - this.#inStart;
    if (length > 0) new Uint8Array(this.#memory, this.#inStart, length).fill(0);
  }
}
