import { describe, expect, it } from 'vitest';
import { createKeyRecord, evaluate } from './lifecycle.ts';
import type { KeyRecord } from './model.ts';
import {
  countsNonces,
  DEFAULT_NONCE_BUDGET,
  decideNonces,
  nonceBudgetReached,
  reservationBlock,
  withNonceCount,
} from './nonce-budget.ts';
import { parseKeySpec } from './spec.ts';

const T0 = 1_700_000_000_000;

function key(spec: Record<string, unknown>): KeyRecord {
  return createKeyRecord(
    {
      namespace: 'default',
      name: 'counted',
      spec: parseKeySpec(spec),
      firstVersion: { version: 1, createdTime: T0, wrapped: 'AQ==' },
    },
    T0,
  );
}

describe('decideNonces', () => {
  it('spends within the reservation, reserves a block ahead, and rotates at the budget', () => {
    expect(decideNonces({ used: 0, reserved: 0 }, 1, 2 ** 30)).toEqual({
      action: 'reserve',
      reserved: 1 + 2 ** 20,
    });
    expect(decideNonces({ used: 5, reserved: 10 }, 5, 2 ** 30)).toEqual({ action: 'proceed' });
    expect(decideNonces({ used: 5, reserved: 10 }, 6, 2 ** 30).action).toBe('reserve');
    // Never reserved past the budget...
    expect(decideNonces({ used: 9995, reserved: 9995 }, 1, 10_000)).toEqual({
      action: 'reserve',
      reserved: 10_000,
    });
    // ...and never spent past it: the version rotates first.
    expect(decideNonces({ used: 100, reserved: 100 }, 1, 100)).toEqual({ action: 'rotate' });
    expect(decideNonces({ used: 99, reserved: 100 }, 2, 100)).toEqual({ action: 'rotate' });
    expect(decideNonces({ used: 99, reserved: 100 }, 1, 100)).toEqual({ action: 'proceed' });
  });

  it('lets a fresh version take a batch larger than a tiny budget, once', () => {
    expect(decideNonces({ used: 0, reserved: 0 }, 1000, 10)).toEqual({ action: 'reserve', reserved: 1000 });
    expect(decideNonces({ used: 1000, reserved: 1000 }, 1, 10)).toEqual({ action: 'rotate' });
  });

  it('over-counts by at most one block per crash: a restart takes the reservation as spent', () => {
    const budget = 2 ** 30;
    let durable = 0;
    let used = 0;
    // 10 million encryptions in calls of 1..1000, with a crash after each reservation write.
    let crashes = 0;
    let encrypted = 0;
    while (encrypted < 10_000_000) {
      const n = 1 + (encrypted % 1000);
      const d = decideNonces({ used, reserved: durable }, n, budget);
      if (d.action === 'reserve') {
        durable = d.reserved;
        if (crashes < 5) {
          crashes++;
          used = durable; // the restart
        }
        continue;
      }
      expect(d.action).toBe('proceed');
      used += n;
      encrypted += n;
      expect(durable).toBeGreaterThanOrEqual(used);
    }
    expect(durable - encrypted).toBeLessThanOrEqual(6 * reservationBlock(budget));
  });
});

describe('the budget in the pure lifecycle', () => {
  it('makes a rotation due at the budget, even with automatic rotation off', () => {
    const off = key({ usage: 'AES256', rotation: { enabled: false } });
    expect(evaluate(off, T0, { deletionDelayMs: 0, nonceBudget: 100 }).due).toEqual([]);
    const spent = withNonceCount(off, 1, 100);
    expect(evaluate(spent, T0, { deletionDelayMs: 0, nonceBudget: 100 }).due).toEqual([
      { type: 'add-version', version: 2, reason: 'nonce-budget' },
    ]);
    expect(evaluate(spent, T0, { deletionDelayMs: 0, nonceBudget: 101 }).due).toEqual([]);
    // The default budget applies when none is given.
    expect(evaluate(withNonceCount(off, 1, DEFAULT_NONCE_BUDGET), T0).due).toHaveLength(1);
  });

  it('does not rotate a Disabled or PendingDeletion key, nor for an older version', () => {
    const spent = withNonceCount(key({ usage: 'AES256' }), 1, 100);
    const opts = { deletionDelayMs: 1000, nonceBudget: 100 };
    expect(evaluate({ ...spent, state: 'Disabled' }, T0, opts).due).toEqual([]);
    expect(
      evaluate({ ...spent, state: 'PendingDeletion', deletionScheduledTime: T0 + 10 }, T0, opts).due,
    ).toEqual([]);
    const rotated = {
      ...spent,
      currentVersion: 2,
      versions: [...spent.versions, { version: 2, createdTime: T0, wrapped: 'AQ==' }],
    };
    expect(evaluate(rotated, T0, opts).due).toEqual([]);
  });

  it('exempts convergent and non-AES keys', () => {
    expect(countsNonces({ usage: 'AES256', convergent: false })).toBe(true);
    expect(countsNonces({ usage: 'AES256', convergent: true })).toBe(false);
    expect(countsNonces({ usage: 'RSA2048', convergent: false })).toBe(false);
    const convergent = withNonceCount(key({ usage: 'AES256', convergent: true }), 1, 10 ** 12);
    expect(nonceBudgetReached(convergent, 1)).toBe(false);
  });
});
