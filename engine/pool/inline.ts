/**
 * The inline fast path (issue #15): a single small operation that arrives while no other work is
 * in flight runs on the main thread, with the KeyObjects the main thread already holds, so that a
 * sequential caller pays no thread hop (a message to a worker and back costs more than a 1 KiB
 * AES-GCM seal). Under load the pool takes over: measured, a busy main thread spends less per
 * operation handing coalesced batches to the workers than running each one itself (a 1 KiB AES
 * single-request load at 64 connections used 25 % more CPU per request when inline).
 *
 * "No other work in flight" is: the pool holds nothing, and the host says it is not busy (the HTTP
 * server: no other request in flight). A caller of the engine API alone has no host to say so;
 * for it the budget below is the bound.
 *
 * The event loop cannot starve: inline crypto is paid from a budget of main-thread time that
 * refills at `share` of the wall clock, up to `burstMs`. An operation runs inline only while the
 * budget is positive, and is charged what it took. Over any window of T ms, inline crypto takes at
 * most `share × T + burstMs` plus one operation (the last one admitted), whatever the load; every
 * operation that does not fit goes to the pool. Only operations that cost well under a
 * millisecond are eligible (AES-GCM, ECDSA and RSA public-key operations; never RSA private-key
 * operations, convergent keys or prehashed signatures).
 */
import type { KeyUsage } from '../keys/model.ts';
import type { TaskParams, WorkerOp } from './protocol.ts';

/** Options of InlineGate. */
export interface InlineOptions {
  /** Largest share of main-thread time inline crypto may take (0 turns the fast path off). */
  share?: number;
  /** Budget that may be spent at once, in milliseconds. */
  burstMs?: number;
  /** The host's own view: true while it has other work in flight (the HTTP server's requests). */
  busy?: () => boolean;
  /** The clock, in milliseconds; tests pass their own. */
  now?: () => number;
}

/** Defaults, chosen on measurement (docs/performance.md). */
export const INLINE_DEFAULTS = { share: 0.25, burstMs: 2 } as const;

/** True for operations cheap enough to run on the main thread (see the module comment). */
export function inlineEligible(
  op: WorkerOp,
  key: { usage: KeyUsage; convergent: boolean },
  params: TaskParams,
): boolean {
  if (key.convergent || params.prehashed === true) return false;
  switch (op) {
    case 'aes-seal':
    case 'aes-open':
    case 'rsa-encrypt':
    case 'data-key':
    case 'verify':
      return true;
    case 'sign':
      return key.usage === 'ECDSA';
    default:
      return false;
  }
}

/** The budget of inline time; see the module comment. */
export class InlineGate {
  readonly share: number;
  readonly burstMs: number;
  readonly #busy: () => boolean;
  readonly #now: () => number;
  #budget: number;
  #last: number;
  /** Operations run inline, and the milliseconds they took. */
  ops = 0;
  ms = 0;

  constructor(options: InlineOptions = {}) {
    this.share = options.share ?? INLINE_DEFAULTS.share;
    this.burstMs = options.burstMs ?? INLINE_DEFAULTS.burstMs;
    this.#busy = options.busy ?? (() => false);
    this.#now = options.now ?? (() => performance.now());
    this.#last = this.#now();
    this.#budget = this.share > 0 ? this.burstMs : 0;
  }

  /** True when an operation that arrives now may run inline (`poolIdle`: the pool holds no work). */
  admit(poolIdle = true): boolean {
    if (this.share <= 0 || !poolIdle || this.#busy()) return false;
    const now = this.#now();
    this.#budget = Math.min(this.burstMs, this.#budget + (now - this.#last) * this.share);
    this.#last = now;
    return this.#budget > 0;
  }

  /** Runs `work` inline and charges the time it took. */
  run<T>(work: () => T): T {
    const start = this.#now();
    try {
      return work();
    } finally {
      const end = this.#now();
      const spent = end - start;
      this.#budget -= spent;
      this.ops++;
      this.ms += spent;
    }
  }
}
