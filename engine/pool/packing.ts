/**
 * Packs a batch's byte fields into one ArrayBuffer so a whole batch crosses the thread boundary
 * as a single transferred buffer. Cloning an array of Buffers per item costs more than the
 * crypto it carries (measured: it erases the pool's gain), so every batch is packed.
 *
 * Layout, little-endian:
 *   u32 count, u32 fields, u32 offsets[count * fields + 1], then the bytes.
 * Field f of item i spans [offsets[i*fields+f], offsets[i*fields+f+1]) of the data region.
 */

const HEADER_WORDS = 2;

/** Reads one field of one item; undefined packs as empty. */
export type FieldReader = (item: number, field: number) => Uint8Array | undefined;

/**
 * Packs `count` items of `fields` byte fields each into a fresh ArrayBuffer.
 * @returns a buffer the caller should transfer, not copy.
 */
export function packBatch(count: number, fields: number, read: FieldReader): ArrayBuffer {
  const slots = count * fields;
  let dataLength = 0;
  for (let i = 0; i < count; i++) {
    for (let f = 0; f < fields; f++) dataLength += read(i, f)?.byteLength ?? 0;
  }
  const headerBytes = (HEADER_WORDS + slots + 1) * 4;
  const buffer = new ArrayBuffer(headerBytes + dataLength);
  const header = new Uint32Array(buffer, 0, HEADER_WORDS + slots + 1);
  const data = new Uint8Array(buffer, headerBytes);
  header[0] = count;
  header[1] = fields;
  let offset = 0;
  let slot = HEADER_WORDS;
  for (let i = 0; i < count; i++) {
    for (let f = 0; f < fields; f++) {
      header[slot++] = offset;
      const bytes = read(i, f);
      if (bytes !== undefined && bytes.byteLength > 0) {
        data.set(bytes, offset);
        offset += bytes.byteLength;
      }
    }
  }
  header[slot] = offset;
  return buffer;
}

/** A read-only view over a packed batch. Fields are zero-copy Buffer views into the buffer. */
export class PackedBatch {
  readonly count: number;
  readonly fields: number;
  readonly #header: Uint32Array;
  readonly #buffer: ArrayBuffer;
  readonly #dataStart: number;

  constructor(buffer: ArrayBuffer) {
    if (buffer.byteLength < HEADER_WORDS * 4) throw new RangeError('packed batch too short');
    const head = new Uint32Array(buffer, 0, HEADER_WORDS);
    this.count = head[0]!;
    this.fields = head[1]!;
    const words = HEADER_WORDS + this.count * this.fields + 1;
    if (buffer.byteLength < words * 4) throw new RangeError('packed batch header truncated');
    this.#header = new Uint32Array(buffer, 0, words);
    this.#buffer = buffer;
    this.#dataStart = words * 4;
    if (this.#dataStart + this.#header[words - 1]! > buffer.byteLength) {
      throw new RangeError('packed batch data truncated');
    }
  }

  /** Field `field` of item `item`, as a Buffer view (no copy). */
  field(item: number, field: number): Buffer {
    const slot = HEADER_WORDS + item * this.fields + field;
    const start = this.#header[slot]!;
    const end = this.#header[slot + 1]!;
    return Buffer.from(this.#buffer, this.#dataStart + start, end - start);
  }
}
