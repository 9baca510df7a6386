import { describe, expect, it } from 'vitest';
import type { UsageReport } from '../engine/cluster/usage-report.ts';
import { createKeyRecord } from '../engine/keys/lifecycle.ts';
import type { StoredKey } from '../engine/kube/material-secret.ts';
import { decodeMaterialSecret, encodeMaterialSecret } from '../engine/kube/material-secret.ts';
import { foldUsage, reportsForKey } from './usage.ts';

const T = Date.parse('2026-11-29T10:00:00Z');

function stored(): StoredKey {
  return {
    record: createKeyRecord(
      {
        namespace: 'ns',
        name: 'k1',
        spec: {
          usage: 'AES256',
          convergent: false,
          boundary: 'Global',
          rotation: { enabled: true, periodDays: 90 },
          memo: '',
        },
        firstVersion: { version: 1, createdTime: T, wrapped: 'AAAA' },
      },
      T,
    ),
    ownerUid: 'uid-1',
  };
}

function report(
  identity: string,
  instance: string,
  counts: Record<string, number>,
  lastUsedTime: number,
  uid = 'uid-1',
): UsageReport {
  return {
    format: 1,
    identity,
    instance,
    startedTime: T,
    reportedTime: lastUsedTime,
    keys: {
      'ns/k1': { namespace: 'ns', name: 'k1', uid, lastUsedTime, counts },
      'ns/other': { namespace: 'ns', name: 'other', lastUsedTime, counts: { encrypt: 99 } },
    },
  };
}

/** Folds and round-trips through the Secret format, as the operator does between passes. */
function fold(s: StoredKey, reports: UsageReport[]): StoredKey {
  const out = foldUsage(s, 'uid-1', reportsForKey(reports, 'ns', 'k1'));
  return out === undefined ? s : decodeMaterialSecret(encodeMaterialSecret('op', out));
}

describe('foldUsage', () => {
  it('counts every use exactly once across repeated folds and replicas', () => {
    let s = stored();
    s = fold(s, [report('a', 'a1', { encrypt: 5 }, T + 10), report('b', 'b1', { decrypt: 2 }, T + 20)]);
    expect(s.record.operationCounts).toEqual({ encrypt: 5, decrypt: 2 });
    expect(s.record.lastUsedTime).toBe(T + 20);
    // the same reports again: nothing new
    expect(
      foldUsage(
        s,
        'uid-1',
        reportsForKey(
          [report('a', 'a1', { encrypt: 5 }, T + 10), report('b', 'b1', { decrypt: 2 }, T + 20)],
          'ns',
          'k1',
        ),
      ),
    ).toBeUndefined();
    // a replica moved on
    s = fold(s, [report('a', 'a1', { encrypt: 8 }, T + 30), report('b', 'b1', { decrypt: 2 }, T + 20)]);
    expect(s.record.operationCounts).toEqual({ encrypt: 8, decrypt: 2 });
    expect(s.record.lastUsedTime).toBe(T + 30);
  });

  it('starts a restarted engine instance from zero and forgets the old one', () => {
    let s = fold(stored(), [report('a', 'a1', { encrypt: 5 }, T + 10)]);
    s = fold(s, [report('a', 'a2', { encrypt: 1 }, T + 40)]);
    expect(s.record.operationCounts).toEqual({ encrypt: 6 });
    expect(Object.keys(s.usageSeen ?? {})).toEqual(['a/a2']);
  });

  it('does not credit uses made against an earlier Key of the same name', () => {
    const out = foldUsage(
      stored(),
      'uid-1',
      reportsForKey([report('a', 'a1', { encrypt: 5 }, T + 10, 'uid-0')], 'ns', 'k1'),
    );
    expect(out).toBeUndefined();
  });
});

/** A report whose entry for ns/k1 carries per-version nonce reservations. */
function reserving(
  identity: string,
  instance: string,
  versions: Record<string, number>,
  uid = 'uid-1',
): UsageReport {
  return {
    format: 2,
    identity,
    instance,
    startedTime: T,
    reportedTime: T,
    keys: {
      'ns/k1': {
        namespace: 'ns',
        name: 'k1',
        uid,
        lastUsedTime: 0,
        counts: {},
        versions: Object.fromEntries(Object.entries(versions).map(([v, n]) => [v, { nonces: n }])),
      },
    },
  };
}

describe('foldUsage: nonce reservations (issue #11: the material Secret carries nonceCount)', () => {
  it('adds each instance’s new reservations to the version’s nonceCount exactly once, through the Secret', () => {
    let s = stored();
    s = fold(s, [reserving('e1', 'i1', { '1': 100 }), reserving('e2', 'i2', { '1': 40 })]);
    expect(s.record.versions[0]!.nonceCount).toBe(140);
    // The same reports again: nothing new. More from e1: only the difference.
    s = fold(s, [reserving('e1', 'i1', { '1': 100 }), reserving('e2', 'i2', { '1': 40 })]);
    expect(s.record.versions[0]!.nonceCount).toBe(140);
    s = fold(s, [reserving('e1', 'i1', { '1': 164 }), reserving('e2', 'i2', { '1': 40 })]);
    expect(s.record.versions[0]!.nonceCount).toBe(204);
    expect(s.usageSeen?.['e1/i1']?.['v1.nonces']).toBe(164);
    // A reservation is not a use.
    expect(s.record.lastUsedTime).toBeUndefined();
  });

  it('counts a restarted instance from zero (an over-count at worst, never an under-count)', () => {
    let s = fold(stored(), [reserving('e1', 'i1', { '1': 100 })]);
    s = fold(s, [reserving('e1', 'i2', { '1': 10 })]);
    expect(s.record.versions[0]!.nonceCount).toBe(110);
  });

  it('ignores reservations for a version the record lacks, and those made against another uid', () => {
    const s = fold(stored(), [
      reserving('e1', 'i1', { '7': 100 }),
      reserving('e2', 'i2', { '1': 5 }, 'uid-old'),
    ]);
    expect(s.record.versions[0]!.nonceCount).toBeUndefined();
  });
});
