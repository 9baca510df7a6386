/**
 * CryptoEngine: the operations of PRODUCT.md §4.1 on a KeyRing, run in the worker pool. Single
 * calls are coalesced into batches by the pool, or run inline on the main thread when the pool is
 * idle and the operation is cheap (pool/inline.ts); `batch` runs a caller's batch with one result
 * or error per item, in order; `batchRequest` hands a whole batch request's body to a worker
 * (pool/request-runner.ts). The engine knows nothing of lifecycle states, stores or HTTP: the
 * service checks the key is Enabled before it calls in.
 */
import type { JsonWebKey } from 'node:crypto';
import { exportPublicKey } from './crypto/public-key.ts';
import { invalidArgument, KeywardError } from './errors.ts';
import {
  assertUsage,
  type CiphertextOutput,
  type DataKeyInput,
  type DataKeyOutput,
  type DecryptInput,
  type EncryptInput,
  finishPlan,
  type KeyRing,
  type PlaintextOutput,
  type Plan,
  planDataKey,
  planDecrypt,
  planEncrypt,
  planSign,
  planVerify,
  type SignatureOutput,
  type SignInput,
  taskKey,
  type VerifyInput,
  type VerifyOutput,
} from './operation-plans.ts';
import { CryptoPool } from './pool/crypto-pool.ts';
import { InlineGate, type InlineOptions, inlineEligible } from './pool/inline.ts';
import { type ItemOutcome, itemBytes } from './pool/items.ts';
import { DerivedKeyCache, type ItemContext, NonceSource, runItem } from './pool/ops.ts';
import type { CryptoPoolOptions } from './pool/pool-options.ts';
import { ITEM_FAILED, ITEM_INVALID } from './pool/protocol.ts';
import { type RequestOutcome, wireError } from './pool/request-runner.ts';
import { keyRevoked } from './pool/task-errors.ts';

export type * from './operation-plans.ts';
export type { InlineOptions } from './pool/inline.ts';
export type { CryptoPoolOptions } from './pool/pool-options.ts';

/** Options of the engine: its pool, and the inline fast path (false: every operation pooled). */
export interface CryptoEngineOptions extends CryptoPoolOptions {
  inline?: InlineOptions | false;
  /** Public keys kept exported (FIFO beyond; default 1024). */
  maxPublicKeys?: number;
}

/** What a batch request run in a worker gives back (pool/request-runner.ts). */
export type BatchRequestOutcome = Extract<RequestOutcome, { type: 'done' | 'error' }>;

/** The operations a batch request may carry (PRODUCT.md §6). */
export type BatchOperation = 'encrypt' | 'decrypt' | 're-encrypt' | 'sign' | 'verify';

/** Inputs of each batch operation. */
export interface BatchInputs {
  encrypt: EncryptInput;
  decrypt: DecryptInput;
  're-encrypt': DecryptInput;
  sign: SignInput;
  verify: VerifyInput;
}
/** Outputs of each batch operation. */
export interface BatchOutputs {
  encrypt: CiphertextOutput;
  decrypt: PlaintextOutput;
  're-encrypt': CiphertextOutput;
  sign: SignatureOutput;
  verify: VerifyOutput;
}

/** One item's result in a batch: its output, or its own error. */
export type BatchItemResult<T> = { ok: true; value: T } | { ok: false; error: KeywardError };

/** A public key in both export forms. */
export interface PublicKeyOutput {
  keyVersion: number;
  pem: string;
  jwk: JsonWebKey;
}

function asKeywardError(error: unknown): KeywardError {
  return error instanceof KeywardError ? error : new KeywardError('INTERNAL', 'the operation failed');
}

/** See the module comment. */
export class CryptoEngine {
  readonly pool: CryptoPool;
  /** The inline fast path's budget; undefined when it is off. */
  readonly inline: InlineGate | undefined;
  // Public keys are exported on the main thread (cheap, and cached, FIFO-bounded): no worker round trip.
  readonly #publicKeys = new Map<string, PublicKeyOutput>();
  /** Nonces of inline encryptions (never the workers' ones: each thread draws its own). */
  readonly #inlineContext: ItemContext = { nonces: new NonceSource(), derived: new DerivedKeyCache(0) };
  /** Versions a ring's batch requests needed beyond the current one, so later ones bring them. */
  readonly #requestVersions = new WeakMap<KeyRing, Set<number>>();

  readonly #maxPublicKeys: number;

  constructor(options: CryptoEngineOptions = {}) {
    const { inline, maxPublicKeys, ...pool } = options;
    this.#maxPublicKeys = maxPublicKeys ?? 1024;
    this.pool = new CryptoPool(pool);
    this.inline = inline === false ? undefined : new InlineGate(inline);
  }

  // The operations are async so that a bad argument rejects like any other failure: callers
  // never need a try around a call that returns a promise.

  /** Encrypts under the key's current version. */
  async encrypt(ring: KeyRing, input: EncryptInput): Promise<CiphertextOutput> {
    return this.#single(planEncrypt(ring, input));
  }

  /** Decrypts a `keyward:v<N>:` ciphertext under the version it names. */
  async decrypt(ring: KeyRing, input: DecryptInput): Promise<PlaintextOutput> {
    return this.#single(planDecrypt(ring, input));
  }

  /** Moves a ciphertext to the current version; the plaintext never leaves the engine. */
  async reEncrypt(ring: KeyRing, input: DecryptInput): Promise<CiphertextOutput> {
    assertUsage(ring, 're-encrypt');
    const { plaintext } = await this.decrypt(ring, input);
    try {
      return await this.encrypt(ring, { ...input, plaintext });
    } finally {
      plaintext.fill(0);
    }
  }

  /** Signs a message (or a SHA-256 digest with `prehashed`) under the current version. */
  async sign(ring: KeyRing, input: SignInput): Promise<SignatureOutput> {
    return this.#single(planSign(ring, input));
  }

  /** Verifies a signature under the version it names: `{valid}`, never an error for a bad signature. */
  async verify(ring: KeyRing, input: VerifyInput): Promise<VerifyOutput> {
    const plan = planVerify(ring, input);
    return 'op' in plan ? this.#single(plan) : plan;
  }

  /** Generates a data key sealed under the current version (envelope encryption). */
  async dataKey(ring: KeyRing, input: DataKeyInput = {}): Promise<DataKeyOutput> {
    return this.#single(planDataKey(ring, input));
  }

  /** The public key of a version (default: current) as PEM (SPKI) and JWK. */
  publicKey(ring: KeyRing, version = ring.currentVersion): PublicKeyOutput {
    assertUsage(ring, 'get-public-key');
    if (!Number.isInteger(version) || version < 1)
      throw invalidArgument('version', 'version must be a positive integer');
    const key = taskKey(ring, version);
    if (key === undefined)
      throw new KeywardError('KEY_NOT_FOUND', `the key has no version ${version}`, { field: 'version' });
    const cached = this.#publicKeys.get(key.id);
    if (cached !== undefined) return cached;
    const prepared = key.prepared();
    if (prepared === undefined) throw keyRevoked();
    const out: PublicKeyOutput = { keyVersion: version, ...exportPublicKey(prepared) };
    if (this.#publicKeys.size >= this.#maxPublicKeys)
      this.#publicKeys.delete(this.#publicKeys.keys().next().value!);
    this.#publicKeys.set(key.id, out);
    return out;
  }

  /**
   * Runs a batch (PRODUCT.md §6): each item gets its own result or error, in order; one bad item
   * never fails the others. Items are grouped by key version into worker tasks. The batch is
   * admitted whole or refused whole with OVERLOADED.
   */
  async batch<Op extends BatchOperation>(
    operation: Op,
    ring: KeyRing,
    items: readonly BatchInputs[Op][],
  ): Promise<BatchItemResult<BatchOutputs[Op]>[]> {
    // A key that cannot do this operation fails the whole batch, not each item.
    assertUsage(ring, operation);
    if (operation === 're-encrypt') {
      return (await this.#batchReEncrypt(ring, items as readonly DecryptInput[])) as BatchItemResult<
        BatchOutputs[Op]
      >[];
    }
    const plan = (input: BatchInputs[Op]): Plan<BatchOutputs[Op]> | BatchOutputs[Op] => {
      switch (operation) {
        case 'encrypt':
          return planEncrypt(ring, input as EncryptInput) as Plan<BatchOutputs[Op]>;
        case 'decrypt':
          return planDecrypt(ring, input as DecryptInput) as Plan<BatchOutputs[Op]>;
        case 'sign':
          return planSign(ring, input as SignInput) as Plan<BatchOutputs[Op]>;
        default:
          return planVerify(ring, input as VerifyInput) as Plan<BatchOutputs[Op]> | BatchOutputs[Op];
      }
    };
    return this.#runPlans(
      items.map((item) => item),
      plan,
    );
  }

  /**
   * Makes every worker drop the key versions `ids` (a key disabled or destroyed), and forgets
   * their public keys. Revoke the keys first (LoadedKey.revoke), so no task registers them again.
   */
  evict(ids: readonly string[]): void {
    if (ids.length === 0) return;
    for (const id of ids) this.#publicKeys.delete(id);
    this.pool.evict(ids);
  }

  /** Stops taking work, finishes what is queued, and stops the workers. */
  close(): Promise<void> {
    return this.pool.close();
  }

  async #single<T>(plan: Plan<T>): Promise<T> {
    const gate = this.inline;
    if (
      gate !== undefined &&
      inlineEligible(plan.op, plan.key, plan.params) &&
      gate.admit(this.pool.pendingItems === 0 && !this.pool.closing)
    ) {
      const prepared = plan.key.prepared();
      if (prepared === undefined) throw keyRevoked();
      const f = plan.fields;
      const outcome = gate.run((): ItemOutcome => {
        try {
          return runItem(
            plan.op,
            plan.key.id,
            { prepared },
            plan.params,
            f[0] ?? EMPTY,
            f[1] ?? EMPTY,
            f[2] ?? EMPTY,
            this.#inlineContext,
          );
        } catch (err) {
          // The same statuses a worker gives (pool/worker.ts), so both paths answer alike.
          return (err as { code?: string }).code === 'INVALID_ARGUMENT' ? ITEM_INVALID : ITEM_FAILED;
        }
      });
      return finishPlan(plan, outcome);
    }
    return this.pool.submit(plan.op, plan.key, plan.params, plan.batchKey, plan.fields, (outcome) =>
      finishPlan(plan, outcome),
    );
  }

  /** Public keys held exported now (the cache is bounded by `maxPublicKeys`). */
  get publicKeysCached(): number {
    return this.#publicKeys.size;
  }

  /**
   * Runs a whole batch request of `op` in a worker, from its raw JSON body (an ArrayBuffer of its
   * own, transferred): parsing, validation, crypto and the response body happen there
   * (pool/request-runner.ts). `itemsBound` is the most items the body can hold. Key-level
   * refusals (wrong usage) throw here, before the body is looked at.
   */
  async batchRequest(
    operation: BatchOperation,
    ring: KeyRing,
    body: ArrayBuffer,
    itemsBound: number,
  ): Promise<BatchRequestOutcome> {
    assertUsage(ring, operation);
    let known = this.#requestVersions.get(ring);
    if (known === undefined) {
      known = new Set([ring.currentVersion]);
      this.#requestVersions.set(ring, known);
    }
    const seen = known;
    return this.pool.runRequest(
      operation,
      { usage: ring.usage, convergent: ring.convergent, currentVersion: ring.currentVersion },
      [...known],
      body,
      itemsBound,
      (version) => {
        // Bounded by the key's versions: learned once per ring (a rotation makes a new one).
        seen.add(version);
        try {
          return taskKey(ring, version) ?? null;
        } catch (err) {
          return wireError(err);
        }
      },
    );
  }

  async #batchReEncrypt(
    ring: KeyRing,
    items: readonly DecryptInput[],
  ): Promise<BatchItemResult<CiphertextOutput>[]> {
    assertUsage(ring, 're-encrypt');
    const opened = await this.#runPlans(items, (input) => planDecrypt(ring, input));
    const sealed = await this.#runPlans(opened, (result, i) => {
      if (!result.ok) throw result.error;
      return planEncrypt(ring, { ...items[i]!, plaintext: result.value.plaintext });
    });
    for (const result of opened) if (result.ok) result.value.plaintext.fill(0);
    return sealed;
  }

  /** Plans every item (collecting per-item errors), runs each group as one batch, keeps order. */
  async #runPlans<In, Out>(
    inputs: readonly In[],
    plan: (input: In, index: number) => Plan<Out> | Out,
  ): Promise<BatchItemResult<Out>[]> {
    const results: BatchItemResult<Out>[] = new Array(inputs.length);
    const groups = new Map<string, { plans: Plan<Out>[]; indexes: number[]; sizes: number[] }>();
    let planned = 0;
    let bytes = 0;
    for (let index = 0; index < inputs.length; index++) {
      try {
        const p = plan(inputs[index]!, index);
        if (p === null || typeof p !== 'object' || !('batchKey' in p)) {
          results[index] = { ok: true, value: p as Out };
          continue;
        }
        let group = groups.get(p.batchKey);
        if (group === undefined) {
          group = { plans: [], indexes: [], sizes: [] };
          groups.set(p.batchKey, group);
        }
        const size = itemBytes(p.op, p.params, p.fields);
        group.plans.push(p);
        group.indexes.push(index);
        group.sizes.push(size);
        planned++;
        bytes += size;
      } catch (error) {
        results[index] = { ok: false, error: asKeywardError(error) };
      }
    }
    // The request is admitted whole or refused whole: OVERLOADED rejects the call itself.
    if (planned > 0) this.pool.reserve(planned, bytes);
    await Promise.all(
      [...groups.values()].map(async ({ plans, indexes, sizes }) => {
        const first = plans[0]!;
        try {
          await this.pool.runBatch(
            first.op,
            first.key,
            first.params,
            plans.map((p) => p.fields),
            (outcome: ItemOutcome, j: number) => {
              try {
                results[indexes[j]!] = { ok: true, value: finishPlan(plans[j]!, outcome) };
              } catch (error) {
                results[indexes[j]!] = { ok: false, error: asKeywardError(error) };
              }
            },
            { reserved: true, sizes },
          );
        } catch (error) {
          for (const index of indexes) {
            results[index] ??= { ok: false, error: asKeywardError(error) };
          }
        }
      }),
    );
    return results;
  }
}

const EMPTY = Buffer.alloc(0);
