import { describe, expect, it } from 'vitest';
import { createKeyRecord } from '../keys/lifecycle.ts';
import type { StoredKey } from '../kube/material-secret.ts';
import { NonceReservations, nonceCursorName, type ReservationSink } from './nonce-reservations.ts';

function stored(nonceCount?: number, seen?: Record<string, Record<string, number>>): StoredKey {
  const record = createKeyRecord(
    {
      namespace: 'ns',
      name: 'k',
      spec: {
        usage: 'AES256',
        convergent: false,
        boundary: 'Global',
        rotation: { enabled: false, periodDays: 90 },
        memo: '',
      },
      firstVersion: {
        version: 1,
        createdTime: 1,
        wrapped: 'AAAA',
        ...(nonceCount === undefined ? {} : { nonceCount }),
      },
    },
    1,
  );
  return { record, ...(seen === undefined ? {} : { usageSeen: seen }) };
}

/** A sink that records what was made durable, and can be made to fail. */
function sink(): ReservationSink & { durable: number; recorded: number; fail: boolean; flushes: number } {
  const s = {
    source: 'engine-0/inst',
    durable: 0,
    recorded: 0,
    fail: false,
    flushes: 0,
    record(_ns: string, _n: string, _uid: string | undefined, _v: number, reserved: number) {
      s.recorded = reserved;
    },
    async flush() {
      s.flushes++;
      await new Promise((r) => setTimeout(r, 1));
      if (s.fail) throw new Error('apiserver down');
      s.durable = s.recorded;
    },
  };
  return s;
}

describe('NonceReservations (cluster engine)', () => {
  it('publishes a reservation before any encryption it covers, in blocks', async () => {
    const out = sink();
    const n = new NonceReservations(out, 1024 * 10);
    let spent = 0;
    for (let i = 0; i < 50; i++) {
      await n.spend('ns', 'k', 'u', 1, 1, () => stored());
      spent++;
      // Never an encryption the durable count does not cover.
      expect(out.durable).toBeGreaterThanOrEqual(spent);
    }
    // Blocks of budget/1024: a handful of writes, not one per encryption.
    expect(out.flushes).toBeLessThanOrEqual(6);
  });

  it('refuses with UNAVAILABLE once the version’s budget is spent, counting what others reserved', async () => {
    const out = sink();
    const n = new NonceReservations(out, 100);
    // The operator folded 90 from other replicas into the Secret.
    const s = stored(90);
    let ok = 0;
    let refused: unknown;
    for (let i = 0; i < 20; i++) {
      try {
        await n.spend('ns', 'k', 'u', 1, 1, () => s);
        ok++;
      } catch (err) {
        refused = err;
        break;
      }
    }
    expect(ok).toBe(10);
    expect(refused).toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringMatching(/nonce budget of 100/),
    });
  });

  it('does not count its own folded reservations twice', async () => {
    const out = sink();
    const n = new NonceReservations(out, 100);
    let s = stored();
    for (let i = 0; i < 30; i++) await n.spend('ns', 'k', 'u', 1, 1, () => s);
    // The operator folds this instance's reservation: the Secret's count includes it.
    s = stored(out.durable, { 'engine-0/inst': { [nonceCursorName(1)]: out.durable } });
    let ok = 30;
    for (let i = 0; i < 200; i++) {
      try {
        await n.spend('ns', 'k', 'u', 1, 1, () => s);
        ok++;
      } catch {
        break;
      }
    }
    expect(ok).toBe(100);
  });

  it('encrypts nothing when the reservation cannot be written', async () => {
    const out = sink();
    out.fail = true;
    const n = new NonceReservations(out, 1 << 20);
    await expect(n.spend('ns', 'k', 'u', 1, 1, () => stored())).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    expect(n.counters('ns', 'k', 'u').get(1)?.used ?? 0).toBe(0);
  });

  it('concurrent callers share one reservation write and never pass the durable count', async () => {
    const out = sink();
    const n = new NonceReservations(out, 1 << 20);
    await Promise.all(Array.from({ length: 200 }, () => n.spend('ns', 'k', 'u', 1, 1, () => stored())));
    expect(out.durable).toBeGreaterThanOrEqual(200);
    expect(out.flushes).toBeLessThanOrEqual(3);
  });

  // Fault suite, "kill -9 etcd": a Key rotated during the outage reached the engine as the
  // apiserver came back, the new version's first reservation could not be written, and an
  // encryption under that key got 503 although the engine held an unspent reservation of v1.
  it('a new version whose reservation cannot be published encrypts under the earlier reservation', async () => {
    const out = sink();
    let now = 1_000_000;
    const n = new NonceReservations(out, 1 << 20, () => now);
    expect(await n.spend('ns', 'k', 'u', 1, 1, () => stored())).toBe(1);
    const v1Reserved = out.durable;
    out.fail = true;
    // The rotation is seen: v2 has no reservation and none can be published.
    expect(await n.spend('ns', 'k', 'u', 2, 1, () => stored())).toBe(1);
    const flushes = out.flushes;
    // Within a second of the failure the next ones use v1 at once, without another write.
    expect(await Promise.all([1, 2, 3].map(() => n.spend('ns', 'k', 'u', 2, 1, () => stored())))).toEqual([
      1, 1, 1,
    ]);
    expect(out.flushes).toBe(flushes);
    expect(n.counters('ns', 'k', 'u').get(1)).toEqual({ used: 5, reserved: v1Reserved });
    expect(n.counters('ns', 'k', 'u').get(2)?.used ?? 0).toBe(0);
    // After it, v2's reservation is tried again; once published, v2 is used.
    now += 1_000;
    expect(await n.spend('ns', 'k', 'u', 2, 1, () => stored())).toBe(1);
    expect(out.flushes).toBe(flushes + 1);
    out.fail = false;
    now += 1_000;
    expect(await n.spend('ns', 'k', 'u', 2, 1, () => stored())).toBe(2);
    expect(out.durable).toBeGreaterThanOrEqual(1);
  });

  it('never spends past an earlier reservation: with none left, the new version refuses', async () => {
    const out = sink();
    // A budget of 2048 reserves in blocks of 2: v1 holds 3 after its first encryption.
    const n = new NonceReservations(out, 2048, () => 0);
    expect(await n.spend('ns', 'k', 'u', 1, 1, () => stored())).toBe(1);
    expect(n.counters('ns', 'k', 'u').get(1)).toEqual({ used: 1, reserved: 3 });
    out.fail = true;
    expect(await n.spend('ns', 'k', 'u', 2, 2, () => stored())).toBe(1);
    await expect(n.spend('ns', 'k', 'u', 2, 1, () => stored())).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    expect(n.counters('ns', 'k', 'u').get(1)).toEqual({ used: 3, reserved: 3 });
    // A version with no earlier one refuses as before.
    await expect(n.spend('ns', 'other', 'u', 1, 1, () => stored())).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
  });
});
