import { describe, expect, it } from 'vitest';
import { DAY_MS, type LifecycleOptions } from '../engine/keys/lifecycle.ts';
import { FINALIZER, type KeyResource } from '../engine/kube/key-resource.ts';
import {
  decodeMaterialSecret,
  encodeMaterialSecret,
  type StoredKey,
} from '../engine/kube/material-secret.ts';
import { type PlanInput, planReconcile } from './plan.ts';
import { buildStatus } from './status.ts';

const NOW = Date.parse('2026-11-29T10:00:00Z');
const LC: LifecycleOptions = { deletionDelayMs: 20_000 };

function keyObj(
  over: Partial<KeyResource['metadata']> = {},
  spec: Partial<KeyResource['spec']> = {},
): KeyResource {
  return {
    metadata: {
      name: 'orders',
      namespace: 'team-a',
      uid: 'uid-1',
      generation: 1,
      finalizers: [FINALIZER],
      ...over,
    },
    spec: {
      usage: 'AES256',
      convergent: false,
      boundary: 'Global',
      rotation: { enabled: true, periodDays: 90 },
      memo: '',
      state: 'Enabled',
      ...spec,
    },
  };
}

/** Runs a plan and fills in material as the edge would, returning the next stored key. */
function apply(input: PlanInput): { plan: ReturnType<typeof planReconcile>; stored: StoredKey | undefined } {
  const plan = planReconcile(input);
  if (plan.stored === 'erase') return { plan, stored: undefined };
  if (plan.stored === undefined) return { plan, stored: input.stored };
  const record = {
    ...plan.stored.record,
    versions: plan.stored.record.versions.map((v) =>
      plan.newVersions.includes(v.version) ? { ...v, wrapped: `w${v.version}` } : v,
    ),
  };
  return { plan, stored: { ...plan.stored, record } };
}

function created(spec: Partial<KeyResource['spec']> = {}): StoredKey {
  const s = apply({ key: keyObj({}, spec), stored: undefined, now: NOW, lifecycle: LC }).stored;
  if (s === undefined) throw new Error('not created');
  return s;
}

describe('planReconcile: creation', () => {
  it('adds the finalizer and creates version 1, Enabled, owned by the Key, requeued at the rotation', () => {
    const { plan, stored } = apply({
      key: keyObj({ finalizers: [] }),
      stored: undefined,
      now: NOW,
      lifecycle: LC,
    });
    expect(plan.addFinalizer).toBe(true);
    expect(plan.create).toBe(true);
    expect(plan.newVersions).toEqual([1]);
    expect(stored?.ownerUid).toBe('uid-1');
    expect(stored?.record).toMatchObject({
      state: 'Enabled',
      currentVersion: 1,
      createdTime: NOW,
      rotationAnchorTime: NOW,
    });
    expect(plan.requeueAt).toBe(NOW + 90 * DAY_MS);
    expect(plan.events.map((e) => e.reason)).toEqual(['Created']);
  });

  it('is idempotent: a second pass over the stored key changes nothing', () => {
    const stored = created();
    const plan = planReconcile({ key: keyObj(), stored, now: NOW + 1000, lifecycle: LC });
    expect(plan).toMatchObject({
      addFinalizer: false,
      stored: undefined,
      newVersions: [],
      events: [],
      deleteObject: false,
    });
  });

  it('records a rotate annotation present at creation without rotating', () => {
    const { stored, plan } = apply({
      key: keyObj({ annotations: { 'keyward.io/rotate': 'r1' } }),
      stored: undefined,
      now: NOW,
      lifecycle: LC,
    });
    expect(plan.newVersions).toEqual([1]);
    expect(stored?.rotateHandled).toBe('r1');
  });
});

describe('planReconcile: desired state', () => {
  it('disables, then enables', () => {
    const a = apply({ key: keyObj({}, { state: 'Disabled' }), stored: created(), now: NOW, lifecycle: LC });
    expect(a.stored?.record.state).toBe('Disabled');
    expect(a.plan.events.map((e) => e.reason)).toEqual(['Disabled']);
    expect(a.plan.requeueAt).toBeUndefined();
    const b = apply({ key: keyObj({}, { state: 'Enabled' }), stored: a.stored, now: NOW, lifecycle: LC });
    expect(b.stored?.record.state).toBe('Enabled');
  });

  it('PendingDeletion schedules deletion at now + delay; setting Disabled cancels to Disabled', () => {
    const a = apply({
      key: keyObj({}, { state: 'PendingDeletion' }),
      stored: created(),
      now: NOW,
      lifecycle: LC,
    });
    expect(a.stored?.record).toMatchObject({ state: 'PendingDeletion', deletionScheduledTime: NOW + 20_000 });
    expect(a.plan.requeueAt).toBe(NOW + 20_000);
    const b = apply({
      key: keyObj({}, { state: 'Disabled' }),
      stored: a.stored,
      now: NOW + 5000,
      lifecycle: LC,
    });
    expect(b.stored?.record.state).toBe('Disabled');
    expect(b.stored?.record.deletionScheduledTime).toBeUndefined();
    expect(b.plan.events.map((e) => e.reason)).toEqual(['DeletionCancelled']);
  });

  it('spec PendingDeletion past its time deletes the object (the deletion path erases)', () => {
    const a = apply({
      key: keyObj({}, { state: 'PendingDeletion' }),
      stored: created(),
      now: NOW,
      lifecycle: LC,
    });
    const plan = planReconcile({
      key: keyObj({}, { state: 'PendingDeletion' }),
      stored: a.stored,
      now: NOW + 20_000,
      lifecycle: LC,
    });
    expect(plan.deleteObject).toBe(true);
    expect(plan.stored).toBeUndefined();
  });
});

describe('planReconcile: rotation', () => {
  it('rotates once per new annotation value and keeps old versions', () => {
    let stored = created();
    const key = keyObj({ annotations: { 'keyward.io/rotate': 'one' } });
    const a = apply({ key, stored, now: NOW + 10, lifecycle: LC });
    expect(a.plan.newVersions).toEqual([2]);
    stored = a.stored!;
    expect(stored.record.versions.map((v) => v.wrapped)).toEqual(['w1', 'w2']);
    expect(stored.rotateHandled).toBe('one');
    expect(stored.record.rotationAnchorTime).toBe(NOW); // manual rotation keeps the schedule
    expect(planReconcile({ key, stored, now: NOW + 20, lifecycle: LC }).newVersions).toEqual([]);
    const b = apply({
      key: keyObj({ annotations: { 'keyward.io/rotate': 'two' } }),
      stored,
      now: NOW + 30,
      lifecycle: LC,
    });
    expect(b.stored?.record.currentVersion).toBe(3);
  });

  it('rotates on schedule once, even after a long downtime, and requeues at the next period', () => {
    const stored = created({ rotation: { enabled: true, periodDays: 1 } });
    const late = NOW + 3 * DAY_MS + 5;
    const a = apply({
      key: keyObj({}, { rotation: { enabled: true, periodDays: 1 } }),
      stored,
      now: late,
      lifecycle: LC,
    });
    expect(a.plan.newVersions).toEqual([2]);
    expect(a.stored?.record.rotationAnchorTime).toBe(NOW + 3 * DAY_MS);
    expect(a.plan.requeueAt).toBe(NOW + 4 * DAY_MS);
  });
});

describe('planReconcile: deletion', () => {
  const deleting = (annotations: Record<string, string> = {}) =>
    keyObj({ deletionTimestamp: '2026-11-29T10:00:00Z', annotations });

  it('kubectl delete schedules at deletionTimestamp + delay and holds the finalizer', () => {
    const a = apply({ key: deleting(), stored: created(), now: NOW + 3000, lifecycle: LC });
    expect(a.stored?.record.deletionScheduledTime).toBe(NOW + 20_000);
    expect(a.plan.removeFinalizer).toBe(false);
    expect(a.plan.requeueAt).toBe(NOW + 20_000);
    // after a restart, the same schedule is recomputed from the stored time
    const b = planReconcile({ key: deleting(), stored: a.stored, now: NOW + 19_999, lifecycle: LC });
    expect(b).toMatchObject({ stored: undefined, removeFinalizer: false, requeueAt: NOW + 20_000 });
    const c = planReconcile({ key: deleting(), stored: a.stored, now: NOW + 20_000, lifecycle: LC });
    expect(c).toMatchObject({ stored: 'erase', removeFinalizer: true, writeStatus: false });
  });

  it('warns when a recently used key is deleted', () => {
    const used = created();
    used.record = { ...used.record, lastUsedTime: NOW - 1000 };
    const plan = planReconcile({ key: deleting(), stored: used, now: NOW, lifecycle: LC });
    expect(plan.events.map((e) => [e.type, e.reason])).toEqual([
      ['Normal', 'DeletionRequested'],
      ['Warning', 'RecentlyUsed'],
    ]);
  });

  it('delete-now erases at once', () => {
    const plan = planReconcile({
      key: deleting({ 'keyward.io/delete-now': 'true' }),
      stored: created(),
      now: NOW,
      lifecycle: LC,
    });
    expect(plan).toMatchObject({ stored: 'erase', removeFinalizer: true });
    expect(plan.events.map((e) => e.reason)).toEqual(['DeletionRequested', 'Destroyed']);
  });

  it('cancel-deletion keeps the material Disabled, releases it and the object', () => {
    const pending = apply({ key: deleting(), stored: created(), now: NOW, lifecycle: LC }).stored;
    const plan = planReconcile({
      key: deleting({ 'keyward.io/cancel-deletion': 'true' }),
      stored: pending,
      now: NOW + 1,
      lifecycle: LC,
    });
    expect(plan.removeFinalizer).toBe(true);
    expect(plan.stored).not.toBe('erase');
    const kept = plan.stored as StoredKey;
    expect(kept.ownerUid).toBeUndefined();
    expect(kept.record.state).toBe('Disabled');
  });

  it('a Key re-applied with the same usage adopts released material; another usage does not', () => {
    const pending = apply({ key: deleting(), stored: created(), now: NOW, lifecycle: LC }).stored;
    const released = planReconcile({
      key: deleting({ 'keyward.io/cancel-deletion': 'true' }),
      stored: pending,
      now: NOW,
      lifecycle: LC,
    }).stored as StoredKey;
    const other = planReconcile({
      key: keyObj({ uid: 'uid-2' }, { usage: 'ECDSA' }),
      stored: released,
      now: NOW,
      lifecycle: LC,
    });
    expect(other.stored).toBeUndefined();
    expect(other.conflict?.reason).toBe('MaterialConflict');
    expect(other.conflict?.message).toMatch(
      /^material kept for an \w+ key of this name cannot be adopted by an ECDSA Key;/,
    );
    expect(other.events.map((e) => e.type)).toEqual(['Warning']);
    const status = buildStatus(keyObj({ uid: 'uid-2' }, { usage: 'ECDSA' }), undefined, other.conflict, NOW);
    expect(status.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'MaterialConflict',
    });
    const same = apply({
      key: keyObj({ uid: 'uid-3' }, { state: 'Disabled' }),
      stored: released,
      now: NOW,
      lifecycle: LC,
    });
    expect(same.plan.create).toBe(false);
    expect(same.stored?.ownerUid).toBe('uid-3');
    expect(same.stored?.record.versions).toEqual(released.record.versions);
    expect(same.plan.events.map((e) => e.reason)).toEqual(['Adopted']);
  });

  it('a deleted Key without stored material just loses its finalizer', () => {
    expect(planReconcile({ key: deleting(), stored: undefined, now: NOW, lifecycle: LC })).toMatchObject({
      removeFinalizer: true,
      stored: undefined,
    });
  });
});

describe('buildStatus and the Secret format', () => {
  it('projects the record without material and round-trips through the Secret', () => {
    const stored = { ...created(), fingerprint: 'fp1' };
    const secret = encodeMaterialSecret('keyward-system', stored);
    expect(secret.metadata.name).toBe('kkey.team-a.orders');
    expect(secret.data?.v1).toBe('w1');
    expect(decodeMaterialSecret(secret)).toEqual(stored);
    const status = buildStatus(keyObj(), stored, undefined, NOW);
    expect(status).toMatchObject({
      state: 'Enabled',
      currentVersion: 1,
      versions: [{ version: 1, createdTime: '2026-11-29T10:00:00Z' }],
      nextRotationTime: '2027-02-27T10:00:00Z',
      fingerprint: 'fp1',
      observedGeneration: 1,
    });
    expect(JSON.stringify(status)).not.toContain('w1');
    expect(status.conditions?.map((c) => [c.type, c.status])).toEqual([
      ['Ready', 'True'],
      ['Enabled', 'True'],
      ['PendingDeletion', 'False'],
    ]);
  });
});

describe('planReconcile: usage reports', () => {
  const rep = (encrypt: number, at: number) => [
    {
      format: 1,
      identity: 'e',
      instance: 'i1',
      startedTime: NOW,
      reportedTime: at,
      keys: {
        'team-a/orders': {
          namespace: 'team-a',
          name: 'orders',
          uid: 'uid-1',
          lastUsedTime: at,
          counts: { encrypt },
        },
      },
    },
  ];

  it('folds usage into the record at most once per interval, then shows it in status', () => {
    const a = apply({
      key: keyObj(),
      stored: created(),
      now: NOW + 1000,
      lifecycle: LC,
      usage: { reports: rep(3, NOW + 500), minIntervalMs: 60_000 },
    });
    expect(a.stored?.record.operationCounts).toEqual({ encrypt: 3 });
    expect(a.stored?.usageFoldedTime).toBe(NOW + 1000);
    const early = planReconcile({
      key: keyObj(),
      stored: a.stored,
      now: NOW + 30_000,
      lifecycle: LC,
      usage: { reports: rep(7, NOW + 20_000), minIntervalMs: 60_000 },
    });
    expect(early.stored).toBeUndefined();
    // The waiting usage brings the Key back when the interval ends (not at the next rotation).
    expect(early.requeueAt).toBe(NOW + 1000 + 60_000);
    const later = apply({
      key: keyObj(),
      stored: a.stored,
      now: NOW + 61_000,
      lifecycle: LC,
      usage: { reports: rep(7, NOW + 20_000), minIntervalMs: 60_000 },
    });
    expect(later.stored?.record.operationCounts).toEqual({ encrypt: 7 });
    const status = buildStatus(keyObj(), later.stored, undefined, NOW + 61_000);
    expect(status).toMatchObject({ lastUsedTime: '2026-11-29T10:00:20Z', operationCounts: { encrypt: 7 } });
  });
});

describe('planReconcile: master key (issue #11)', () => {
  it('writes, rotates and erases nothing over material of another master key, and says so once', () => {
    const stored = created();
    const key = keyObj({ annotations: { 'keyward.io/rotate': 'now' } }, { state: 'Disabled' });
    const plan = planReconcile({ key, stored, now: NOW, lifecycle: LC, masterKeyMismatch: 'restore it' });
    expect(plan.stored).toBeUndefined();
    expect(plan.newVersions).toEqual([]);
    expect(plan.conflict).toEqual({ reason: 'MasterKeyMismatch', message: 'restore it' });
    expect(plan.events).toEqual([{ type: 'Warning', reason: 'MasterKeyMismatch', message: 'restore it' }]);
    const status = buildStatus(key, undefined, plan.conflict, NOW);
    const ready = status.conditions?.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'False', reason: 'MasterKeyMismatch', message: 'restore it' });
    // Reported already: no second Warning.
    const again = planReconcile({
      key: { ...key, status },
      stored,
      now: NOW,
      lifecycle: LC,
      masterKeyMismatch: 'restore it',
    });
    expect(again.events).toEqual([]);
  });

  it('does not erase on delete-now while the master key does not match', () => {
    const stored = created();
    const key = keyObj(
      { deletionTimestamp: new Date(NOW).toISOString(), annotations: { 'keyward.io/delete-now': 'true' } },
      { state: 'PendingDeletion' },
    );
    const plan = planReconcile({ key, stored, now: NOW, lifecycle: LC, masterKeyMismatch: 'restore it' });
    expect(plan.stored).toBeUndefined();
    expect(plan.removeFinalizer).toBe(false);
  });
});

describe('planReconcile: nonce budget (issue #11)', () => {
  const budget: LifecycleOptions = { ...LC, nonceBudget: 100 };
  const report = (nonces: number) => ({
    format: 2,
    identity: 'engine-0',
    instance: 'i1',
    startedTime: NOW,
    reportedTime: NOW,
    keys: {
      'team-a/orders': {
        namespace: 'team-a',
        name: 'orders',
        uid: 'uid-1',
        lastUsedTime: 0,
        counts: {},
        versions: { '1': { nonces } },
      },
    },
  });

  it('folds a reservation that reaches the budget at once and rotates, even with rotation off, saying why', () => {
    const stored = { ...created({ rotation: { enabled: false, periodDays: 90 } }), usageFoldedTime: NOW };
    const key = keyObj({}, { rotation: { enabled: false, periodDays: 90 } });
    const { plan, stored: after } = apply({
      key,
      stored,
      now: NOW + 1,
      lifecycle: budget,
      usage: { reports: [report(100)], minIntervalMs: 60_000 },
    });
    expect(after?.record.versions[0]?.nonceCount).toBe(100);
    expect(after?.record.currentVersion).toBe(2);
    expect(plan.newVersions).toEqual([2]);
    const event = plan.events.find((e) => e.reason === 'Rotated');
    expect(event?.message).toMatch(/nonce-budget rotation: version 1 reached its budget of 100/);
    expect(event?.message).toMatch(/automatic rotation is off/);
  });

  it('waits for the interval below the budget', () => {
    const stored = { ...created(), usageFoldedTime: NOW };
    const plan = planReconcile({
      key: keyObj(),
      stored,
      now: NOW + 1,
      lifecycle: budget,
      usage: { reports: [report(10)], minIntervalMs: 60_000 },
    });
    expect(plan.stored).toBeUndefined();
    expect(plan.requeueAt).toBe(NOW + 60_000);
  });
});

describe('planReconcile: audit actions (one per change the plan writes)', () => {
  const ops = (plan: ReturnType<typeof planReconcile>) =>
    plan.actions.map((a) => [a.operation, a.version, a.trigger, a.outcome]);

  it('names each action of a key’s life once, with its version and what asked for it', () => {
    const a = apply({ key: keyObj({ finalizers: [] }), stored: undefined, now: NOW, lifecycle: LC });
    expect(a.plan.actions).toEqual([
      { operation: 'create', version: 1, trigger: 'new Key', outcome: 'ok', detail: 'AES256' },
    ]);
    // A pass over the same state changes nothing and records nothing.
    expect(planReconcile({ key: keyObj(), stored: a.stored, now: NOW + 1, lifecycle: LC }).actions).toEqual(
      [],
    );

    const b = apply({
      key: keyObj({}, { rotation: { enabled: true, periodDays: 30 }, memo: 'orders db', state: 'Disabled' }),
      stored: a.stored,
      now: NOW + 2,
      lifecycle: LC,
    });
    expect(ops(b.plan)).toEqual([
      ['update', 1, 'spec', 'ok'],
      ['disable', 1, 'spec.state=Disabled', 'ok'],
    ]);
    // The memo is named, never quoted.
    expect(b.plan.actions[0]?.detail).toBe('rotation.periodDays 90->30, memo');

    const c = apply({
      key: keyObj(
        { annotations: { 'keyward.io/rotate': 'r1' } },
        { rotation: { enabled: true, periodDays: 30 }, memo: 'orders db' },
      ),
      stored: b.stored,
      now: NOW + 3,
      lifecycle: LC,
    });
    expect(ops(c.plan)).toEqual([
      ['enable', 1, 'spec.state=Enabled', 'ok'],
      ['rotate', 2, 'keyward.io/rotate=r1', 'ok'],
    ]);

    const d = apply({
      key: keyObj(
        { annotations: { 'keyward.io/rotate': 'r1' } },
        { rotation: { enabled: true, periodDays: 30 }, memo: 'orders db' },
      ),
      stored: c.stored,
      now: NOW + 30 * DAY_MS + 5,
      lifecycle: LC,
    });
    expect(ops(d.plan)).toEqual([['rotate', 3, 'rotation-schedule', 'ok']]);

    const e = apply({
      key: keyObj(
        { annotations: { 'keyward.io/rotate': 'r1' } },
        { rotation: { enabled: true, periodDays: 30 }, memo: 'orders db', state: 'PendingDeletion' },
      ),
      stored: d.stored,
      now: NOW + 30 * DAY_MS + 6,
      lifecycle: LC,
    });
    expect(ops(e.plan)).toEqual([['request-deletion', 3, 'spec.state=PendingDeletion', 'ok']]);
    expect(e.plan.actions[0]?.detail).toMatch(/^erasure at \d{4}-/);
  });

  it('kubectl delete, then delete-now: deletion requested at the deletionTimestamp, then destroyed', () => {
    const deleting = (annotations: Record<string, string> = {}) =>
      keyObj({ deletionTimestamp: '2026-11-29T10:00:00Z', annotations });
    const a = apply({ key: deleting(), stored: created(), now: NOW + 10, lifecycle: LC });
    expect(ops(a.plan)).toEqual([['request-deletion', 1, 'deletionTimestamp', 'ok']]);
    // Waiting for the schedule records nothing.
    expect(
      planReconcile({ key: deleting(), stored: a.stored, now: NOW + 11, lifecycle: LC }).actions,
    ).toEqual([]);
    const b = planReconcile({
      key: deleting({ 'keyward.io/delete-now': 'true' }),
      stored: a.stored,
      now: NOW + 12,
      lifecycle: LC,
    });
    expect(b.actions).toEqual([
      {
        operation: 'destroy',
        version: 1,
        trigger: 'keyward.io/delete-now=true',
        outcome: 'ok',
        detail: 'all 1 versions erased',
      },
    ]);
    const due = planReconcile({ key: deleting(), stored: a.stored, now: NOW + 20_000, lifecycle: LC });
    expect(ops(due)).toEqual([['destroy', 1, 'deletion-schedule', 'ok']]);
  });

  it('cancel-deletion, adoption and a refused adoption', () => {
    const deleting = (annotations: Record<string, string> = {}) =>
      keyObj({ deletionTimestamp: '2026-11-29T10:00:00Z', annotations });
    const pending = apply({ key: deleting(), stored: created(), now: NOW, lifecycle: LC }).stored;
    const cancel = planReconcile({
      key: deleting({ 'keyward.io/cancel-deletion': 'true' }),
      stored: pending,
      now: NOW + 1,
      lifecycle: LC,
    });
    expect(ops(cancel)).toEqual([['cancel-deletion', 1, 'keyward.io/cancel-deletion=true', 'ok']]);
    const released = cancel.stored as StoredKey;
    const refused = planReconcile({
      key: keyObj({ uid: 'uid-2' }, { usage: 'ECDSA' }),
      stored: released,
      now: NOW + 2,
      lifecycle: LC,
    });
    expect(ops(refused)).toEqual([['adopt', 1, 'new Key', 'MATERIAL_CONFLICT']]);
    expect(refused.actions[0]?.detail).toBe('kept material is AES256, the Key asks for ECDSA');
    const adopted = planReconcile({
      key: keyObj({ uid: 'uid-3' }, { state: 'Disabled' }),
      stored: released,
      now: NOW + 3,
      lifecycle: LC,
    });
    expect(adopted.actions).toEqual([
      { operation: 'adopt', version: 1, trigger: 'new Key', outcome: 'ok', detail: 'state Disabled' },
    ]);
  });

  it('folding usage reports writes the Secret but is no action', () => {
    const report = {
      format: 1,
      identity: 'e',
      instance: 'i1',
      startedTime: NOW,
      reportedTime: NOW + 500,
      keys: {
        'team-a/orders': {
          namespace: 'team-a',
          name: 'orders',
          uid: 'uid-1',
          lastUsedTime: NOW + 500,
          counts: { encrypt: 3 },
        },
      },
    };
    const plan = planReconcile({
      key: keyObj(),
      stored: created(),
      now: NOW + 1000,
      lifecycle: LC,
      usage: { reports: [report] as never, minIntervalMs: 0 },
    });
    expect(plan.stored).toBeDefined();
    expect(plan.actions).toEqual([]);
  });
});
