/**
 * Random-nonce counting in the cluster engine (PRODUCT.md §4.4, issue #11). Engines cannot write
 * material Secrets, so each replica reserves blocks of encryptions through its usage report
 * (engine/cluster/usage-report.ts, per-version counter `nonces`) before it spends them, and the
 * leader operator folds the reservations of every replica into the version's `nonceCount` in the
 * material Secret (operator/usage.ts), and rotates the key at the budget.
 *
 * Per key version this instance keeps `used` and `reserved` (cumulative for the process). What the
 * other replicas and earlier instances reserved is the Secret's `nonceCount` less what the
 * operator folded from this instance (its cursor, `StoredKey.usageSeen[source]`), so the decision
 * (`decideNonces`) sees the whole count as far as the operator has folded it. A reservation is
 * published (an awaited ConfigMap write) before any encryption it covers: a crash, a lost write or
 * a failed encryption can only over-count. When the version has no budget left the engine refuses
 * with UNAVAILABLE (retry after a second) until the operator's rotation reaches it.
 *
 * Replicas reserving at once can pass the budget by what the others reserved since the operator
 * last folded (a block is budget/1024); with the default budget of 2^30 that stays far below the
 * 2^32 bound of NIST SP 800-38D (docs/crypto.md).
 *
 * A rotation seen while the apiserver cannot take writes (it has just come back, etcd is down)
 * would otherwise stop every encryption under the key: its new version has no reservation yet. So
 * when a version's reservation cannot be published and this process still holds an unspent
 * reservation of an earlier version, the encryptions are counted under that version and made with
 * it, as a replica that had not yet seen the rotation would; and for RETRY_AFTER_MS after a failed
 * write the next ones go there without waiting for another. Nothing is encrypted uncounted.
 */
import { KeywardError } from '../errors.ts';
import { decideNonces, type NonceCounter, nonceCount } from '../keys/nonce-budget.ts';
import type { StoredKey } from '../kube/material-secret.ts';
import { NONCE_COUNTER } from './usage-report.ts';

/** After a reservation could not be published, how long encryptions use an earlier one first. */
const RETRY_AFTER_MS = 1_000;

/** Where reservations go: the usage counter and its publisher. */
export interface ReservationSink {
  /** `identity/instance` of this engine process (the operator's cursor key). */
  readonly source: string;
  /** Records the cumulative reservation of a version (not yet durable). */
  record(namespace: string, name: string, uid: string | undefined, version: number, reserved: number): void;
  /** Makes every recorded reservation durable; throws when it could not. */
  flush(): Promise<void>;
}

/** One call of `spend`: whose encryptions, how many, and how to read the key's stored material. */
interface Spending {
  namespace: string;
  name: string;
  uid: string | undefined;
  count: number;
  stored: () => StoredKey;
}

/** The key of a key incarnation's counters. */
const incarnation = (namespace: string, name: string, uid: string | undefined): string =>
  `${namespace}/${name}@${uid ?? ''}`;

/** The operator's cursor entry for this instance's nonce counter of `version`. */
export function nonceCursorName(version: number): string {
  return `v${version}.${NONCE_COUNTER}`;
}

/** See the module comment. One per engine process. */
export class NonceReservations {
  readonly #sink: ReservationSink;
  readonly #budget: number;
  /** `namespace/name@uid` → version → counter. */
  readonly #counters = new Map<string, Map<number, NonceCounter>>();
  /** One reservation write at a time per key version; others wait and decide again. */
  readonly #pending = new Map<string, Promise<void>>();
  /** Per key version, when its last reservation write failed. */
  readonly #failedAt = new Map<string, number>();
  readonly #now: () => number;

  constructor(sink: ReservationSink, budget: number, now: () => number = Date.now) {
    this.#sink = sink;
    this.#budget = budget;
    this.#now = now;
  }

  /**
   * Counts `count` random-nonce encryptions under `version` of the key whose material is
   * `stored()` (read again after each wait: the operator may have folded or rotated meanwhile),
   * and returns the version they are counted under: `version`, or an earlier one while `version`'s
   * reservation cannot be published (see the module comment). Resolves once they are covered by a
   * published reservation; throws UNAVAILABLE when the version's budget is spent, or when its
   * reservation cannot be published and no earlier one covers them.
   */
  spend(
    namespace: string,
    name: string,
    uid: string | undefined,
    version: number,
    count: number,
    stored: () => StoredKey,
  ): number | Promise<number> {
    const s: Spending = { namespace, name, uid, count, stored };
    // The common case stays synchronous: no promise per encryption while a reservation covers it.
    if (this.#decide(s, version).decision.action === 'proceed') return version;
    return this.#slow(s, version);
  }

  /** Decides against the stored count plus this engine's own; a `proceed` is spent at once. */
  #decide(s: Spending, version: number): { decision: ReturnType<typeof decideNonces>; base: number } {
    const counter = this.#counter(s, version);
    const base = this.#base(s.stored(), version);
    const decision = decideNonces(
      { used: base + counter.used, reserved: base + counter.reserved },
      s.count,
      this.#budget,
    );
    if (decision.action === 'proceed') counter.used += s.count;
    return { decision, base };
  }

  async #slow(s: Spending, version: number): Promise<number> {
    const ref = `${incarnation(s.namespace, s.name, s.uid)}#${version}`;
    for (;;) {
      const waiting = this.#pending.get(ref);
      if (waiting !== undefined) {
        await waiting.catch(() => undefined);
        continue;
      }
      const { decision, base } = this.#decide(s, version);
      if (decision.action === 'proceed') return version;
      if (decision.action === 'reserve') {
        const failedAt = this.#failedAt.get(ref);
        if (failedAt !== undefined && this.#now() - failedAt < RETRY_AFTER_MS) {
          const earlier = this.#earlier(s, version);
          if (earlier !== undefined) return earlier;
        }
      }
      if (decision.action === 'rotate') {
        throw new KeywardError(
          'UNAVAILABLE',
          `version ${version} of this key has spent its nonce budget of ${this.#budget} random-nonce encryptions; ` +
            'the operator is rotating it',
          { retryAfterSeconds: 1 },
        );
      }
      const reserved = decision.reserved - base;
      const counter = this.#counter(s, version);
      const write = (async () => {
        this.#sink.record(s.namespace, s.name, s.uid, version, reserved);
        try {
          await this.#sink.flush();
          this.#failedAt.delete(ref);
        } catch {
          this.#failedAt.set(ref, this.#now());
          throw new KeywardError(
            'UNAVAILABLE',
            "the key's nonce reservation cannot be recorded (the usage report is not writable); encryption resumes once it is",
            { retryAfterSeconds: 1 },
          );
        }
        counter.reserved = Math.max(counter.reserved, reserved);
      })();
      this.#pending.set(ref, write);
      try {
        await write;
      } catch (err) {
        const earlier = this.#earlier(s, version);
        if (earlier !== undefined) return earlier;
        throw err;
      } finally {
        this.#pending.delete(ref);
      }
    }
  }

  /**
   * The latest version before `version` whose published reservation in this process still covers
   * `count` more encryptions, which are then spent from it; undefined when none does.
   */
  #earlier(s: Spending, version: number): number | undefined {
    const versions = [...this.counters(s.namespace, s.name, s.uid).keys()].filter((v) => v < version);
    for (const v of versions.sort((a, b) => b - a)) {
      if (this.#decide(s, v).decision.action === 'proceed') return v;
    }
    return undefined;
  }

  /** Forgets the counters of a key incarnation (its material is gone). */
  forget(namespace: string, name: string, uid: string | undefined): void {
    const ref = incarnation(namespace, name, uid);
    this.#counters.delete(ref);
    for (const failed of this.#failedAt.keys())
      if (failed.startsWith(`${ref}#`)) this.#failedAt.delete(failed);
  }

  /** What this process reserved and spent per version of a key incarnation (tests, metrics). */
  counters(namespace: string, name: string, uid: string | undefined): ReadonlyMap<number, NonceCounter> {
    return this.#counters.get(incarnation(namespace, name, uid)) ?? new Map();
  }

  #counter(s: Spending, version: number): NonceCounter {
    const ref = incarnation(s.namespace, s.name, s.uid);
    let versions = this.#counters.get(ref);
    if (versions === undefined) {
      versions = new Map();
      this.#counters.set(ref, versions);
    }
    let counter = versions.get(version);
    if (counter === undefined) {
      counter = { used: 0, reserved: 0 };
      versions.set(version, counter);
    }
    return counter;
  }

  /** The count of everyone else: the folded count less what was folded from this instance. */
  #base(stored: StoredKey, version: number): number {
    const folded = stored.usageSeen?.[this.#sink.source]?.[nonceCursorName(version)] ?? 0;
    return Math.max(0, nonceCount(stored.record, version) - folded);
  }
}
