/**
 * The BLAKE3 hash chain (docs/audit.md "Chain"), computed with hash-wasm (WebAssembly: Node has no
 * BLAKE3, and the pure-JS one is several times slower; bench/audit-cases.ts measures both).
 *
 *   leaf_i = BLAKE3(canonical bytes of record i)
 *   hash_i = BLAKE3(prev_i ‖ leaf_i)     with prev_i = hash_{i-1} (32 bytes; zeros for seq 0)
 *
 * Each record carries `prev` and `hash` in hex. Splitting the leaf from the link lets leaves be
 * hashed anywhere (in parallel) while the link, 64 bytes per record, stays in order; and a
 * record's own `hash` localizes an edit to the very line that was changed.
 */
import { createBLAKE3, type IHasher } from 'hash-wasm';

/** `prev` of the first record of a chain. */
export const GENESIS_PREV = '0'.repeat(64);

/** Hex of 32 bytes: the form of `prev` and `hash`. */
export const HASH_HEX = /^[0-9a-f]{64}$/;

/** Hashes leaves and links. One instance per thread; not re-entrant (no await inside). */
export class ChainHasher {
  readonly #h: IHasher;
  /** A record's UTF-8 bytes, reused: hash-wasm would make a Buffer of each string. */
  #text = Buffer.allocUnsafe(4096);
  /** `prev ‖ leaf` of the next link; after a link, its first half holds that link's hash. */
  readonly #pair = Buffer.alloc(64);
  /** The hex of the hash in `#pair`'s first half, if any. */
  #pairHex: string | undefined;

  private constructor(h: IHasher) {
    this.#h = h;
  }

  /** Loads the WebAssembly module once. */
  static async create(): Promise<ChainHasher> {
    return new ChainHasher(await createBLAKE3(256));
  }

  /** BLAKE3 of a record's canonical text (UTF-8). */
  leaf(canonical: string): Uint8Array {
    const h = this.#h;
    h.init();
    h.update(canonical);
    return h.digest('binary');
  }

  /** BLAKE3(prev ‖ leaf), in hex. */
  link(prevHex: string, leaf: Uint8Array): string {
    const h = this.#h;
    h.init();
    h.update(Buffer.from(prevHex, 'hex'));
    h.update(leaf);
    // Node's native hex encoding beats hash-wasm's JS one (measured in a CPU profile).
    const out = h.digest('binary');
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength).toString('hex');
  }

  /**
   * `link(prevHex, leaf(canonical))`, for a chain's next record, in fewer copies: the text is
   * encoded into a reused buffer, and when `prevHex` is the hash this returned last (a chain
   * sealed in order), its bytes are already in place. The glue around the WebAssembly took most of
   * the audit thread's hashing time: in CPU profiles of the audit thread under a single-request
   * load, 3.8 µs per record of which 0.4 in the WebAssembly, against about 0.6 µs with this.
   */
  hash(prevHex: string, canonical: string): string {
    const h = this.#h;
    // UTF-16 to UTF-8 takes at most 3 bytes per code unit.
    if (canonical.length * 3 > this.#text.length) this.#text = Buffer.allocUnsafe(canonical.length * 3);
    const n = this.#text.write(canonical, 0, 'utf8');
    h.init();
    h.update(this.#text.subarray(0, n));
    const leaf = h.digest('binary');
    const pair = this.#pair;
    if (prevHex !== this.#pairHex) pair.write(prevHex, 0, 'hex');
    pair.set(leaf, 32);
    h.init();
    h.update(pair);
    pair.set(h.digest('binary'), 0);
    this.#pairHex = pair.toString('hex', 0, 32);
    return this.#pairHex;
  }
}

/** The line of a record: its canonical text with `hash` and `prev` appended (no newline). */
export function recordLine(canonical: string, hash: string, prev: string): string {
  // canonical ends with '}' and holds at least one member, so the members go before it.
  return `${canonical.slice(0, -1)},"hash":"${hash}","prev":"${prev}"}`;
}
