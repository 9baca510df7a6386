/**
 * Usage history in memory, flushed to the store coalesced: the hot path only bumps counters, and
 * a timer (and close) writes each touched key once. Views merge what is not yet flushed.
 */

import { recordUsage } from '../keys/lifecycle.ts';
import type { KeyOperation, KeyRecord } from '../keys/model.ts';

/** Uses of one key not yet written to the store. */
export interface PendingUsage {
  counts: Map<KeyOperation, number>;
  lastUsedTime: number;
}

/** Counts uses per key (by a caller-chosen id) until `take` hands them over for a flush. */
export class UsageRecorder {
  readonly #pending = new Map<string, PendingUsage>();

  /** Records `count` uses of `op` on key `id` at `now`. */
  record(id: string, op: KeyOperation, count: number, now: number): void {
    if (count <= 0) return;
    let p = this.#pending.get(id);
    if (p === undefined) {
      p = { counts: new Map(), lastUsedTime: now };
      this.#pending.set(id, p);
    }
    p.counts.set(op, (p.counts.get(op) ?? 0) + count);
    if (now > p.lastUsedTime) p.lastUsedTime = now;
  }

  /** What is pending for `id`, without removing it. */
  peek(id: string): PendingUsage | undefined {
    return this.#pending.get(id);
  }

  /** Removes and returns everything pending. */
  takeAll(): Map<string, PendingUsage> {
    const all = new Map(this.#pending);
    this.#pending.clear();
    return all;
  }

  /** Drops what is pending for `id` (the key was destroyed). */
  drop(id: string): void {
    this.#pending.delete(id);
  }

  /** Puts usage back after a failed flush, so it is not lost. */
  restore(id: string, usage: PendingUsage): void {
    for (const [op, n] of usage.counts) this.record(id, op, n, usage.lastUsedTime);
  }
}

/** `record` with `usage` applied (pure). */
export function withUsage(record: KeyRecord, usage: PendingUsage | undefined): KeyRecord {
  if (usage === undefined) return record;
  let next = record;
  for (const [op, n] of usage.counts) next = recordUsage(next, op, usage.lastUsedTime, n);
  return next;
}
