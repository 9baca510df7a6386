/**
 * The inline fast path's bound (issue #15: "show that the switch cannot starve the event loop").
 * A fake clock drives the gate through sustained load: over any window, inline time stays within
 * share × window + burst + one operation.
 */
import { describe, expect, it } from 'vitest';
import { InlineGate, inlineEligible } from './inline.ts';

/** Runs ops of `opMs` back to back for `totalMs` (admitted ones inline, others "pooled" at ~0 cost). */
function drive(gate: InlineGate, clock: { t: number }, opMs: number, totalMs: number, pooledMs = 0.05) {
  const inlineAt: Array<[number, number]> = [];
  while (clock.t < totalMs) {
    if (gate.admit()) {
      const start = clock.t;
      gate.run(() => {
        clock.t += opMs;
      });
      inlineAt.push([start, clock.t]);
    } else {
      clock.t += pooledMs;
    }
  }
  return inlineAt;
}

function inlineWithin(spans: Array<[number, number]>, from: number, to: number): number {
  let total = 0;
  for (const [a, b] of spans) total += Math.max(0, Math.min(b, to) - Math.max(a, from));
  return total;
}

describe('InlineGate', () => {
  it('never lets inline work take more than its share of any window, however heavy the load', () => {
    for (const opMs of [0.005, 0.03, 0.08]) {
      const clock = { t: 0 };
      const gate = new InlineGate({ share: 0.25, burstMs: 2, now: () => clock.t });
      const spans = drive(gate, clock, opMs, 2_000);
      for (const window of [1, 10, 100, 1000]) {
        for (let from = 0; from + window <= 2_000; from += window / 2) {
          expect(inlineWithin(spans, from, from + window)).toBeLessThanOrEqual(
            0.25 * window + 2 + opMs + 1e-9,
          );
        }
      }
      // And it is used: the long-run share is the configured one.
      expect(gate.ms / 2_000).toBeGreaterThan(0.24);
      expect(gate.ms / 2_000).toBeLessThan(0.26 + 2 / 2_000);
    }
  });

  it('runs everything inline when the load fits the share', () => {
    const clock = { t: 0 };
    const gate = new InlineGate({ share: 0.25, burstMs: 2, now: () => clock.t });
    let pooled = 0;
    // One 8 µs operation every 100 µs: 8 % of the thread.
    for (let i = 0; i < 10_000; i++) {
      if (gate.admit()) gate.run(() => (clock.t += 0.008));
      else pooled++;
      clock.t += 0.092;
    }
    expect(pooled).toBe(0);
    expect(gate.ops).toBe(10_000);
  });

  it('leaves operations to the pool while anything else is in flight', () => {
    const clock = { t: 0 };
    let busy = false;
    const gate = new InlineGate({ busy: () => busy, now: () => clock.t });
    expect(gate.admit(true)).toBe(true);
    // The pool holds work.
    expect(gate.admit(false)).toBe(false);
    // The host has other requests in flight.
    busy = true;
    expect(gate.admit(true)).toBe(false);
    busy = false;
    expect(gate.admit(true)).toBe(true);
  });

  it('is off with share 0', () => {
    const gate = new InlineGate({ share: 0 });
    expect(gate.admit()).toBe(false);
  });

  it('admits only cheap operations', () => {
    const aes = { usage: 'AES256', convergent: false } as const;
    const ec = { usage: 'ECDSA', convergent: false } as const;
    const rsa = { usage: 'RSA2048', convergent: false } as const;
    expect(inlineEligible('aes-seal', aes, {})).toBe(true);
    expect(inlineEligible('aes-open', aes, {})).toBe(true);
    expect(inlineEligible('data-key', aes, { dataKeyBytes: 32 })).toBe(true);
    expect(inlineEligible('aes-seal-convergent', { usage: 'AES256', convergent: true }, {})).toBe(false);
    expect(inlineEligible('sign', ec, { algorithm: 'ECDSA_SHA_256' })).toBe(true);
    expect(inlineEligible('sign', ec, { algorithm: 'ECDSA_SHA_256', prehashed: true })).toBe(false);
    expect(inlineEligible('sign', rsa, { algorithm: 'RSASSA_PSS_SHA_256' })).toBe(false);
    expect(inlineEligible('rsa-decrypt', rsa, {})).toBe(false);
    expect(inlineEligible('rsa-encrypt', rsa, {})).toBe(true);
    expect(inlineEligible('verify', rsa, { algorithm: 'RSASSA_PSS_SHA_256' })).toBe(true);
  });
});
