/**
 * The cryptographic half of a KeyBackend, shared by the standalone KeyService and the cluster
 * engine's backend: each resolves a usable KeyRing its own way (file store or informers), and the
 * operations themselves are the same calls into the CryptoEngine.
 */
import type { JsonWebKey } from 'node:crypto';
import { MAX_BATCH_ITEMS } from '../crypto/limits.ts';
import type {
  BatchInputs,
  BatchItemResult,
  BatchOperation,
  BatchOutputs,
  BatchRequestOutcome,
  CiphertextOutput,
  CryptoEngine,
  DataKeyInput,
  DataKeyOutput,
  DecryptInput,
  EncryptInput,
  KeyRing,
  SignatureOutput,
  SignInput,
  VerifyInput,
} from '../engine.ts';
import type { KeyOperation } from '../keys/model.ts';
import { countsNonces } from '../keys/nonce-budget.ts';
import { isKeyRevoked } from '../pool/task-errors.ts';
import type { PoolMemory } from './backend.ts';
import { DEFAULT_MAX_LOADED_VERSIONS, LoadedKeyBudget } from './loaded-keys.ts';

/**
 * The most items a raw batch body can hold: one per `{` after the body's own (every item that
 * can be run is a JSON object, and a structural brace is never escaped), at most MAX_BATCH_ITEMS.
 * Exact for ordinary bodies; braces inside strings only over-count. Costs at most
 * MAX_BATCH_ITEMS + 1 scans (memchr), whatever the body holds.
 */
export function batchItemsBound(body: Uint8Array): number {
  const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  let braces = 0;
  for (let at = bytes.indexOf(0x7b); at >= 0 && braces <= MAX_BATCH_ITEMS; at = bytes.indexOf(0x7b, at + 1)) {
    braces++;
  }
  return Math.max(0, Math.min(MAX_BATCH_ITEMS, braces - 1));
}

/** See the module comment. Subclasses supply `usableRing` and `recordUse`. */
export abstract class CryptoBackend {
  protected readonly engine: CryptoEngine;
  /** The bound on key versions unwrapped on the main thread, shared by the backend's caches. */
  readonly loadedKeys: LoadedKeyBudget;

  constructor(engine: CryptoEngine, maxLoadedVersions = DEFAULT_MAX_LOADED_VERSIONS) {
    this.engine = engine;
    this.loadedKeys = new LoadedKeyBudget(maxLoadedVersions, (ids) => engine.evict(ids));
  }

  /**
   * The ring of a key that may be used here (it exists, is Enabled, is in this engine's region);
   * throws the KeywardError that says why not.
   */
  protected abstract usableRing(namespace: string, name: string): KeyRing;

  /**
   * Records `count` uses of `operation` in the key's usage history. Called only for operations
   * that succeeded: a refused request (wrong usage, bad input, over a limit) did not use the key,
   * and must not make a deletion warning claim recent use.
   */
  protected abstract recordUse(namespace: string, name: string, operation: KeyOperation, count: number): void;

  /** Runs `run` on the key's ring and records one use once it succeeded. */
  async #used<T>(
    namespace: string,
    name: string,
    operation: KeyOperation,
    run: (ring: KeyRing) => Promise<T> | T,
  ): Promise<T> {
    const ring = this.usableRing(namespace, name);
    let out: T;
    try {
      out = await run(ring);
    } catch (err) {
      // The ring was revoked while the operation waited. If the key is still usable under a new
      // ring (its material was re-read: a master-key rotation re-wrapped it), run once more;
      // a key really disabled or destroyed makes usableRing throw why.
      if (!isKeyRevoked(err)) throw err;
      const again = this.usableRing(namespace, name);
      if (again === ring) throw err;
      out = await run(again);
    }
    this.recordUse(namespace, name, operation, 1);
    return out;
  }

  /**
   * Called before `count` encryptions with random nonces under `ring`'s current version (AES keys
   * that are not convergent: encrypt, the encrypt half of re-encrypt, data keys). A backend that
   * counts nonces (nonce-budget.ts) returns the ring to encrypt with, once the count is recorded
   * (or, when the version's budget is spent, the ring of the version that replaced it). The
   * default counts nothing.
   */
  protected randomNonces(
    _namespace: string,
    _name: string,
    ring: KeyRing,
    _count: number,
  ): KeyRing | Promise<KeyRing> {
    return ring;
  }

  /**
   * Gives back `count` random-nonce encryptions counted by `randomNonces` under `ring`'s current
   * version that did not happen (a batch request's items are counted before its body is parsed,
   * by an upper bound). Only to the same key incarnation and version. The default counts
   * nothing, so gives nothing back.
   */
  protected returnNonces(_namespace: string, _name: string, _ring: KeyRing, _count: number): void {}

  /** Items waiting in the engine's queue, for /metrics. */
  queueDepth(): number {
    return this.engine.pool.pendingItems;
  }

  /** Crypto workers that died outside a task since start, for /metrics. */
  workerErrors(): number {
    return this.engine.pool.workerErrors;
  }

  /** The pool's bytes and each worker's heap, for /metrics (docs/performance.md, memory). */
  async poolMemory(): Promise<PoolMemory> {
    const pool = this.engine.pool;
    return {
      pendingBytes: pool.pendingBytes,
      retainedBytes: pool.retainedBytes,
      workers: await pool.workerCaches(1_000),
    };
  }

  async encrypt(namespace: string, name: string, input: EncryptInput): Promise<CiphertextOutput> {
    return this.#used(namespace, name, 'encrypt', async (ring) =>
      this.engine.encrypt(await this.#sealing(namespace, name, ring, 1), input),
    );
  }

  async decrypt(namespace: string, name: string, input: DecryptInput): Promise<{ plaintext: Buffer }> {
    return this.#used(namespace, name, 'decrypt', (ring) => this.engine.decrypt(ring, input));
  }

  async reEncrypt(namespace: string, name: string, input: DecryptInput): Promise<CiphertextOutput> {
    return this.#used(namespace, name, 're-encrypt', async (ring) =>
      this.engine.reEncrypt(await this.#sealing(namespace, name, ring, 1), input),
    );
  }

  async sign(namespace: string, name: string, input: SignInput): Promise<SignatureOutput> {
    return this.#used(namespace, name, 'sign', (ring) => this.engine.sign(ring, input));
  }

  async verify(namespace: string, name: string, input: VerifyInput): Promise<{ valid: boolean }> {
    return this.#used(namespace, name, 'verify', (ring) => this.engine.verify(ring, input));
  }

  async dataKey(namespace: string, name: string, input: DataKeyInput): Promise<DataKeyOutput> {
    return this.#used(namespace, name, 'generate-data-key', async (ring) =>
      this.engine.dataKey(await this.#sealing(namespace, name, ring, 1), input),
    );
  }

  async publicKey(
    namespace: string,
    name: string,
    version?: number,
  ): Promise<{ keyVersion: number; pem: string; jwk: JsonWebKey }> {
    return this.#used(namespace, name, 'get-public-key', (ring) => this.engine.publicKey(ring, version));
  }

  /**
   * One operation over many items, the key resolved once. Key-level refusals (no such key, not
   * Enabled, other region, wrong usage) fail the whole call, even when no item is valid; the uses
   * recorded are the items that succeeded.
   */
  async batch<O extends BatchOperation>(
    namespace: string,
    name: string,
    op: O,
    items: BatchInputs[O][],
  ): Promise<BatchItemResult<BatchOutputs[O]>[]> {
    const run = async (ring: KeyRing, of: BatchInputs[O][]): Promise<BatchItemResult<BatchOutputs[O]>[]> => {
      // Random nonces are counted before the encryptions run (an over-count when items fail).
      const sealing =
        op === 'encrypt' || op === 're-encrypt'
          ? await this.#sealing(namespace, name, ring, of.length)
          : ring;
      return this.engine.batch(op, sealing, of);
    };
    const ring = this.usableRing(namespace, name);
    let results: BatchItemResult<BatchOutputs[O]>[];
    try {
      results = await run(ring, items);
    } catch (err) {
      // As in #used: a ring replaced meanwhile (same material re-read) runs once more.
      if (!isKeyRevoked(err)) throw err;
      const again = this.usableRing(namespace, name);
      if (again === ring) throw err;
      results = await run(again, items);
    }
    // Items refused because the ring was revoked in the queue: once more on the new ring, if any.
    const revoked = results.flatMap((r, i) => (!r.ok && isKeyRevoked(r.error) ? [i] : []));
    if (revoked.length > 0) {
      const again = this.usableRing(namespace, name);
      if (again !== ring) {
        const retried = await run(
          again,
          revoked.map((i) => items[i]!),
        );
        results = [...results];
        revoked.forEach((i, j) => {
          results[i] = retried[j]!;
        });
      }
    }
    let ok = 0;
    for (const r of results) if (r.ok) ok++;
    if (ok > 0) this.recordUse(namespace, name, op, ok);
    return results;
  }

  /**
   * One batch request run whole in a worker, from its raw JSON body (engine.batchRequest). The
   * same key-level refusals as `batch` fail the call first. Random nonces are counted before the
   * worker runs, for as many items as the body can hold, and what was not spent is given back once
   * it answers (never under: a count is only lowered to the encryptions the worker ran). Uses are
   * recorded for the items that succeeded.
   */
  async batchRequest(
    namespace: string,
    name: string,
    op: BatchOperation,
    body: Uint8Array,
  ): Promise<BatchRequestOutcome> {
    let ring = this.usableRing(namespace, name);
    const bound = batchItemsBound(body);
    let counted = 0;
    if ((op === 'encrypt' || op === 're-encrypt') && countsNonces(ring) && bound > 0) {
      ring = await this.randomNonces(namespace, name, ring, bound);
      counted = bound;
    }
    // A copy of its own to transfer per attempt: the caller keeps its buffer (and wipes it).
    const attempt = (r: KeyRing): Promise<BatchRequestOutcome> => {
      const copy = new ArrayBuffer(body.byteLength);
      new Uint8Array(copy).set(body);
      return this.engine.batchRequest(op, r, copy, bound);
    };
    let outcome: BatchRequestOutcome;
    try {
      try {
        outcome = await attempt(ring);
      } catch (err) {
        // As in #used: a ring replaced while the request waited (its material re-read) runs once
        // more, if its current version is the one counted; a key really disabled or destroyed
        // makes usableRing throw why.
        if (!isKeyRevoked(err)) throw err;
        const again = this.usableRing(namespace, name);
        if (again === ring || again.currentVersion !== ring.currentVersion) throw err;
        outcome = await attempt(again);
      }
    } catch (err) {
      // Nothing ran, unless a worker died mid-task: then its encryptions stay counted.
      if (counted > 0 && (err as { code?: string }).code !== 'UNAVAILABLE')
        this.returnNonces(namespace, name, ring, counted);
      throw err;
    }
    const seals = outcome.type === 'done' ? outcome.seals : 0;
    if (seals > counted) {
      // Cannot happen (the bound holds every item); counted late rather than never.
      await this.randomNonces(namespace, name, ring, seals - counted);
    } else if (counted > seals) {
      this.returnNonces(namespace, name, ring, counted - seals);
    }
    const ok = outcome.type === 'done' ? (outcome.results.ok ?? 0) : 0;
    if (ok > 0) this.recordUse(namespace, name, op, ok);
    return outcome;
  }

  // Only AES keys that are not convergent draw random nonces; the rest skip the counter.
  #sealing(namespace: string, name: string, ring: KeyRing, count: number): KeyRing | Promise<KeyRing> {
    return countsNonces(ring) ? this.randomNonces(namespace, name, ring, count) : ring;
  }
}
