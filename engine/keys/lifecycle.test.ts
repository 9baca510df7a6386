import { describe, expect, it } from 'vitest';
import { MAX_KEY_VERSIONS } from '../crypto/limits.ts';
import type { KeywardError } from '../errors.ts';
import {
  applyKeyUpdate,
  applyNewVersion,
  checkUsable,
  createKeyRecord,
  DAY_MS,
  DEFAULT_DELETION_DELAY_MS,
  evaluate,
  HOUR_MS,
  type LifecycleAction,
  type LifecycleEffect,
  nextRotationTime,
  recentlyUsed,
  recordUsage,
  transition,
  transitionOrThrow,
} from './lifecycle.ts';
import type { KeyRecord, KeyState } from './model.ts';

const T0 = Date.UTC(2026, 0, 1);
const OPTS = { deletionDelayMs: DEFAULT_DELETION_DELAY_MS };

function newKey(now = T0, periodDays = 90): KeyRecord {
  return createKeyRecord(
    {
      namespace: 'default',
      name: 'orders',
      spec: {
        usage: 'AES256',
        convergent: false,
        boundary: 'Global',
        rotation: { enabled: true, periodDays },
        memo: '',
      },
      firstVersion: { version: 1, createdTime: now, wrapped: 'd3JhcHBlZA==' },
    },
    now,
  );
}

function inState(state: KeyState, now = T0): KeyRecord {
  const k = newKey(now);
  if (state === 'Enabled') return k;
  if (state === 'Disabled') return transitionOrThrow(k, 'disable', now, OPTS).record;
  return transitionOrThrow(k, 'request-deletion', now, OPTS).record;
}

/** Carries out due effects the way a caller would, with placeholder wrapped material. */
function runDue(key: KeyRecord, now: number): KeyRecord | 'destroyed' {
  let k = key;
  for (const effect of evaluate(k, now, OPTS).due) {
    if (effect.type === 'destroy') return 'destroyed';
    k = applyNewVersion(k, effect, {
      version: effect.version,
      createdTime: now,
      wrapped: `v${effect.version}`,
    });
  }
  return k;
}

function alive(k: KeyRecord | 'destroyed'): KeyRecord {
  if (k === 'destroyed') throw new Error('key unexpectedly destroyed');
  return k;
}

function manualRotate(k: KeyRecord, now: number): KeyRecord {
  const t = transitionOrThrow(k, 'rotate', now, OPTS);
  const effect = t.effects[0] as Extract<LifecycleEffect, { type: 'add-version' }>;
  return applyNewVersion(t.record, effect, { version: effect.version, createdTime: now, wrapped: 'm' });
}

describe('createKeyRecord', () => {
  it('creates an Enabled key with version 1 and the schedule anchored at creation', () => {
    const k = newKey();
    expect(k.state).toBe('Enabled');
    expect(k.currentVersion).toBe(1);
    expect(k.rotationAnchorTime).toBe(T0);
    expect(k.createdTime).toBe(T0);
    expect(k.region).toBeUndefined();
    expect(nextRotationTime(k)).toBe(T0 + 90 * DAY_MS);
  });

  it('refuses a first version other than 1', () => {
    expect(() =>
      createKeyRecord(
        {
          namespace: 'd',
          name: 'abc',
          spec: newKey(),
          firstVersion: { version: 2, createdTime: T0, wrapped: '' },
        },
        T0,
      ),
    ).toThrow(/version 1/);
  });
});

describe('transition table', () => {
  // Every action, checked complete by the compiler.
  const ALL_ACTIONS = Object.keys({
    enable: true,
    disable: true,
    'request-deletion': true,
    'cancel-deletion': true,
    'delete-now': true,
    rotate: true,
  } satisfies Record<LifecycleAction, true>) as LifecycleAction[];
  const legal: Record<KeyState, Partial<Record<LifecycleAction, KeyState | 'Destroyed'>>> = {
    Enabled: {
      enable: 'Enabled',
      disable: 'Disabled',
      'request-deletion': 'PendingDeletion',
      rotate: 'Enabled',
    },
    Disabled: {
      enable: 'Enabled',
      disable: 'Disabled',
      'request-deletion': 'PendingDeletion',
      rotate: 'Disabled',
    },
    PendingDeletion: { 'cancel-deletion': 'Disabled', 'delete-now': 'Destroyed' },
  };

  for (const from of ['Enabled', 'Disabled', 'PendingDeletion'] as const) {
    for (const action of ALL_ACTIONS) {
      const to = legal[from][action];
      if (to === undefined) {
        it(`refuses ${action} from ${from} with KEY_STATE`, () => {
          const key = inState(from);
          const r = transition(key, action, T0 + 1, OPTS);
          expect(r.ok).toBe(false);
          if (r.ok) return;
          expect(r.error.code).toBe('KEY_STATE');
          expect(r.error.status).toBe(409);
          expect(r.error.message.length).toBeGreaterThan(10);
          expect(() => transitionOrThrow(key, action, T0 + 1, OPTS)).toThrow(r.error.message);
        });
      } else {
        it(`${action} takes ${from} to ${to}`, () => {
          const r = transition(inState(from), action, T0 + 1, OPTS);
          expect(r.ok).toBe(true);
          if (r.ok) expect(r.state).toBe(to);
          if (r.ok && to !== 'Destroyed') expect(r.record.state).toBe(to);
        });
      }
    }
  }

  it('enable is refused in PendingDeletion with a clear message', () => {
    const r = transition(inState('PendingDeletion'), 'enable', T0, OPTS);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.message).toMatch(/pending deletion/);
  });

  it('enable and disable are idempotent no-ops in their own state', () => {
    const e = transitionOrThrow(inState('Enabled'), 'enable', T0, OPTS);
    expect(e.changed).toBe(false);
    const d = transitionOrThrow(inState('Disabled'), 'disable', T0, OPTS);
    expect(d.changed).toBe(false);
    expect(transitionOrThrow(inState('Enabled'), 'disable', T0, OPTS).changed).toBe(true);
  });

  it('request-deletion schedules destruction after the delay', () => {
    const now = T0 + 5 * DAY_MS;
    const r = transitionOrThrow(newKey(), 'request-deletion', now, OPTS);
    expect(r.record.deletionScheduledTime).toBe(now + 72 * HOUR_MS);
    expect(r.effects).toEqual([]);
    const short = transitionOrThrow(newKey(), 'request-deletion', now, { deletionDelayMs: 1000 });
    expect(short.record.deletionScheduledTime).toBe(now + 1000);
  });

  it('refuses a bad deletion delay', () => {
    expect(() => transition(newKey(), 'request-deletion', T0, { deletionDelayMs: -1 })).toThrow(
      /deletionDelayMs/,
    );
  });

  it('cancel-deletion leaves the key Disabled without a scheduled time', () => {
    const r = transitionOrThrow(inState('PendingDeletion'), 'cancel-deletion', T0 + HOUR_MS, OPTS);
    expect(r.record.state).toBe('Disabled');
    expect('deletionScheduledTime' in r.record).toBe(false);
    expect(evaluate(r.record, T0 + 10 * DAY_MS, OPTS).due).toEqual([]);
  });

  it('delete-now from PendingDeletion asks for destruction', () => {
    const r = transitionOrThrow(inState('PendingDeletion'), 'delete-now', T0 + 1, OPTS);
    expect(r.state).toBe('Destroyed');
    expect(r.effects).toEqual([{ type: 'destroy' }]);
  });

  it('rotate asks for the next version and keeps the record unchanged', () => {
    const k = inState('Disabled');
    const r = transitionOrThrow(k, 'rotate', T0 + DAY_MS, OPTS);
    expect(r.record).toBe(k);
    expect(r.effects).toEqual([{ type: 'add-version', version: 2, reason: 'manual' }]);
  });

  it('does not mutate its input', () => {
    const k = newKey();
    const copy = structuredClone(k);
    transition(k, 'request-deletion', T0 + 1, OPTS);
    transition(k, 'disable', T0 + 1, OPTS);
    expect(k).toEqual(copy);
  });

  it('refuses an unknown action and a bad clock', () => {
    const r = transition(newKey(), 'explode' as LifecycleAction, T0, OPTS);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('INVALID_ARGUMENT');
    expect(() => transition(newKey(), 'disable', Number.NaN, OPTS)).toThrow(/timestamp/);
  });
});

describe('scheduled deletion', () => {
  it('a key is still there at 71 h 59 m and gone at 72 h', () => {
    const requested = T0 + 3 * DAY_MS;
    const k = transitionOrThrow(newKey(), 'request-deletion', requested, OPTS).record;

    const before = evaluate(k, requested + 71 * HOUR_MS + 59 * 60_000, OPTS);
    expect(before.state).toBe('PendingDeletion');
    expect(before.due).toEqual([]);
    expect(before.nextWakeTime).toBe(requested + 72 * HOUR_MS);
    expect(evaluate(k, requested + 72 * HOUR_MS - 1, OPTS).due).toEqual([]);

    const at = evaluate(k, requested + 72 * HOUR_MS, OPTS);
    expect(at.state).toBe('Destroyed');
    expect(at.due).toEqual([{ type: 'destroy' }]);
    expect(at.nextWakeTime).toBeUndefined();
    expect(evaluate(k, requested + 400 * DAY_MS, OPTS).due).toEqual([{ type: 'destroy' }]);
  });

  it('never rotates a key pending deletion, even long overdue', () => {
    const k = transitionOrThrow(newKey(), 'request-deletion', T0 + 89 * DAY_MS, OPTS).record;
    const e = evaluate(k, T0 + 91 * DAY_MS, OPTS);
    expect(e.due).toEqual([]);
    expect(e.nextRotationTime).toBeUndefined();
    expect(nextRotationTime(k)).toBeUndefined();
  });

  it('refuses to destroy a corrupt PendingDeletion record without a time', () => {
    const k: KeyRecord = { ...newKey(), state: 'PendingDeletion' };
    expect(() => evaluate(k, T0 + 400 * DAY_MS, OPTS)).toThrow(/deletionScheduledTime/);
  });
});

describe('automatic rotation', () => {
  it('rotates at 90 days, not before', () => {
    const k = newKey();
    expect(evaluate(k, T0 + 90 * DAY_MS - 1, OPTS).due).toEqual([]);
    const e = evaluate(k, T0 + 90 * DAY_MS, OPTS);
    expect(e.due).toEqual([
      { type: 'add-version', version: 2, reason: 'scheduled', anchorTime: T0 + 90 * DAY_MS },
    ]);
    expect(e.nextRotationTime).toBe(T0 + 180 * DAY_MS);
    const after = alive(runDue(k, T0 + 90 * DAY_MS));
    expect(after.currentVersion).toBe(2);
    expect(after.versions.map((v) => v.version)).toEqual([1, 2]);
    expect(after.rotationAnchorTime).toBe(T0 + 90 * DAY_MS);
    expect(evaluate(after, T0 + 90 * DAY_MS, OPTS).due).toEqual([]);
  });

  it('a manual rotation at day 30 does not move the day-90 rotation', () => {
    const k = manualRotate(newKey(), T0 + 30 * DAY_MS);
    expect(k.currentVersion).toBe(2);
    expect(k.rotationAnchorTime).toBe(T0);
    expect(nextRotationTime(k)).toBe(T0 + 90 * DAY_MS);
    expect(evaluate(k, T0 + 89 * DAY_MS, OPTS).due).toEqual([]);
    const rotated = alive(runDue(k, T0 + 90 * DAY_MS));
    expect(rotated.currentVersion).toBe(3);
    expect(nextRotationTime(rotated)).toBe(T0 + 180 * DAY_MS);
  });

  it('a process down from day 85 to day 400 rotates once at restart and stays on the grid', () => {
    const k = newKey();
    expect(evaluate(k, T0 + 85 * DAY_MS, OPTS).nextWakeTime).toBe(T0 + 90 * DAY_MS);
    const restart = T0 + 400 * DAY_MS;
    const e = evaluate(k, restart, OPTS);
    expect(e.due).toHaveLength(1);
    expect(e.due[0]).toMatchObject({ type: 'add-version', version: 2, anchorTime: T0 + 360 * DAY_MS });
    const after = alive(runDue(k, restart));
    expect(after.currentVersion).toBe(2);
    expect(after.rotationAnchorTime).toBe(T0 + 360 * DAY_MS);
    expect(evaluate(after, restart, OPTS).due).toEqual([]);
    expect(evaluate(after, restart, OPTS).nextWakeTime).toBe(T0 + 450 * DAY_MS);
  });

  it('re-evaluating a stored record at any point of a wait changes nothing', () => {
    const k = newKey();
    const snapshot = JSON.parse(JSON.stringify(k)) as KeyRecord;
    const wakes = new Set<number | undefined>();
    for (let t = T0; t < T0 + 90 * DAY_MS; t += 7 * HOUR_MS + 13) {
      const e = evaluate(snapshot, t, OPTS);
      expect(e.due).toEqual([]);
      wakes.add(e.nextWakeTime);
    }
    expect([...wakes]).toEqual([T0 + 90 * DAY_MS]);
    expect(snapshot).toEqual(k);

    const pending = transitionOrThrow(k, 'request-deletion', T0 + DAY_MS, OPTS).record;
    const stored = JSON.parse(JSON.stringify(pending)) as KeyRecord;
    for (const t of [T0 + DAY_MS, T0 + 2 * DAY_MS, T0 + 4 * DAY_MS - 1]) {
      expect(evaluate(stored, t, OPTS)).toEqual({
        state: 'PendingDeletion',
        due: [],
        nextWakeTime: T0 + 4 * DAY_MS,
        nextRotationTime: undefined,
      });
    }
  });

  it('does not rotate a Disabled key, and catches up once when it is re-enabled', () => {
    const k = inState('Disabled');
    const e = evaluate(k, T0 + 200 * DAY_MS, OPTS);
    expect(e).toEqual({ state: 'Disabled', due: [], nextWakeTime: undefined, nextRotationTime: undefined });
    const enabled = transitionOrThrow(k, 'enable', T0 + 200 * DAY_MS, OPTS).record;
    const after = alive(runDue(enabled, T0 + 200 * DAY_MS));
    expect(after.currentVersion).toBe(2);
    expect(after.rotationAnchorTime).toBe(T0 + 180 * DAY_MS);
  });

  it('does not rotate when rotation is off', () => {
    const k = applyKeyUpdate(newKey(), { rotation: { enabled: false } }, T0 + DAY_MS);
    expect(evaluate(k, T0 + 1000 * DAY_MS, OPTS).due).toEqual([]);
    expect(nextRotationTime(k)).toBeUndefined();
  });

  it('refuses a stale add-version effect', () => {
    const k = newKey();
    const effect = evaluate(k, T0 + 90 * DAY_MS, OPTS).due[0] as Extract<
      LifecycleEffect,
      { type: 'add-version' }
    >;
    const once = applyNewVersion(k, effect, { version: 2, createdTime: T0, wrapped: 'a' });
    let err: KeywardError | undefined;
    try {
      applyNewVersion(once, effect, { version: 2, createdTime: T0, wrapped: 'b' });
    } catch (e) {
      err = e as KeywardError;
    }
    expect(err?.code).toBe('KEY_STATE');
    expect(() => applyNewVersion(k, effect, { version: 3, createdTime: T0, wrapped: 'a' })).toThrow(
      /rotated/,
    );
  });
});

describe('applyKeyUpdate', () => {
  it('changes the memo only', () => {
    const k = applyKeyUpdate(newKey(), { memo: 'new' }, T0 + DAY_MS);
    expect(k.memo).toBe('new');
    expect(k.rotationAnchorTime).toBe(T0);
  });

  it('re-applying the same policy does not move the anchor', () => {
    const k = applyKeyUpdate(newKey(), { rotation: { enabled: true, periodDays: 90 } }, T0 + 50 * DAY_MS);
    expect(k.rotationAnchorTime).toBe(T0);
  });

  it('enabling rotation does not rotate immediately: the next rotation is one period later', () => {
    const off = applyKeyUpdate(newKey(), { rotation: { enabled: false } }, T0 + DAY_MS);
    const on = applyKeyUpdate(off, { rotation: { enabled: true } }, T0 + 300 * DAY_MS);
    expect(evaluate(on, T0 + 300 * DAY_MS, OPTS).due).toEqual([]);
    expect(nextRotationTime(on)).toBe(T0 + 390 * DAY_MS);
  });

  it('a period change keeps the grid when it can, and never makes a rotation overdue', () => {
    const longer = applyKeyUpdate(newKey(), { rotation: { periodDays: 180 } }, T0 + 60 * DAY_MS);
    expect(nextRotationTime(longer)).toBe(T0 + 180 * DAY_MS);
    const shorter = applyKeyUpdate(newKey(), { rotation: { periodDays: 30 } }, T0 + 10 * DAY_MS);
    expect(nextRotationTime(shorter)).toBe(T0 + 30 * DAY_MS);
    const past = applyKeyUpdate(newKey(), { rotation: { periodDays: 7 } }, T0 + 60 * DAY_MS);
    expect(evaluate(past, T0 + 60 * DAY_MS, OPTS).due).toEqual([]);
    expect(nextRotationTime(past)).toBe(T0 + 67 * DAY_MS);
  });
});

describe('usage history', () => {
  it('counts operations and keeps the latest use time', () => {
    let k = recordUsage(newKey(), 'encrypt', T0 + 10, 5);
    k = recordUsage(k, 'encrypt', T0 + 20);
    k = recordUsage(k, 'decrypt', T0 + 5, 2);
    expect(k.operationCounts).toEqual({ encrypt: 6, decrypt: 2 });
    expect(k.lastUsedTime).toBe(T0 + 20);
  });

  it('refuses a non-positive count', () => {
    expect(() => recordUsage(newKey(), 'sign', T0, 0)).toThrow();
    expect(() => recordUsage(newKey(), 'sign', T0, 1.5)).toThrow();
  });

  it('reports recent use within seven days by default', () => {
    const k = recordUsage(newKey(), 'sign', T0, 1);
    expect(recentlyUsed(newKey(), T0)).toBe(false);
    expect(recentlyUsed(k, T0 + 7 * DAY_MS - 1)).toBe(true);
    expect(recentlyUsed(k, T0 + 7 * DAY_MS)).toBe(false);
    expect(recentlyUsed(k, T0 + HOUR_MS, 30 * 60_000)).toBe(false);
  });
});

describe('checkUsable', () => {
  it('allows only Enabled keys', () => {
    expect(() => checkUsable(inState('Enabled'))).not.toThrow();
    expect(() => checkUsable(inState('Disabled'))).toThrow(/disabled/);
    expect(() => checkUsable(inState('PendingDeletion'))).toThrow(/pending deletion/);
  });
});

describe('version cap (issue #12: 1,500 rotations made a 263 KB record and a 92 KB GET)', () => {
  function atCap(): KeyRecord {
    const key = newKey();
    const versions = Array.from({ length: MAX_KEY_VERSIONS }, (_, i) => ({
      version: i + 1,
      createdTime: T0,
      wrapped: 'd3JhcHBlZA==',
    }));
    return { ...key, versions, currentVersion: MAX_KEY_VERSIONS };
  }

  it('refuses a manual rotation at the cap with KEY_STATE, and allows one below it', () => {
    const full = atCap();
    const refused = transition(full, 'rotate', T0, OPTS);
    expect(refused.ok).toBe(false);
    if (!refused.ok) {
      expect(refused.error.code).toBe('KEY_STATE');
      expect(refused.error.message).toContain(String(MAX_KEY_VERSIONS));
    }
    const below = { ...full, versions: full.versions.slice(1) };
    expect(transition(below, 'rotate', T0, OPTS).ok).toBe(true);
  });

  it('stops automatic rotation at the cap instead of failing on every wake', () => {
    const full = atCap();
    const later = T0 + 400 * DAY_MS;
    expect(evaluate(full, later).due).toEqual([]);
    expect(evaluate(full, later).nextWakeTime).toBeUndefined();
    expect(nextRotationTime(full)).toBeUndefined();
    expect(() =>
      applyNewVersion(
        full,
        { type: 'add-version', version: MAX_KEY_VERSIONS + 1, reason: 'manual' },
        { version: MAX_KEY_VERSIONS + 1, createdTime: later, wrapped: 'eA==' },
      ),
    ).toThrow(/most a key may hold/);
  });
});
