/**
 * The pure reconcile decision for one Key: given the Key object, its stored material (if any),
 * `now` and the options, it says what to change. It reuses the §3 lifecycle module unchanged for
 * every state move and for the schedule; it never reads a clock and does no I/O. The I/O edge
 * (`reconciler.ts`) carries the plan out: it generates and wraps the material of the versions
 * listed in `newVersions`, writes the Secret, then the status (`status.ts`).
 *
 * The Secret is the source of truth for the lifecycle (state, schedule, versions, the handled
 * rotate value); the Key's status is only a projection of it. Deciding from the Secret keeps
 * every step idempotent: a plan carried out twice changes nothing the second time.
 */

import type { UsageReport } from '../engine/cluster/usage-report.ts';
import {
  applyKeyUpdate,
  applyNewVersion,
  createKeyRecord,
  evaluate,
  type LifecycleAction,
  type LifecycleEffect,
  type LifecycleOptions,
  recentlyUsed,
  transition,
} from '../engine/keys/lifecycle.ts';
import type { KeyRecord, KeySpec } from '../engine/keys/model.ts';
import { DEFAULT_NONCE_BUDGET, nonceBudgetReached } from '../engine/keys/nonce-budget.ts';
import {
  CANCEL_DELETION_ANNOTATION,
  DELETE_NOW_ANNOTATION,
  FINALIZER,
  type KeyResource,
  kubeTimeMs,
  ROTATE_ANNOTATION,
  toKubeTime,
} from '../engine/kube/key-resource.ts';
import type { StoredKey } from '../engine/kube/material-secret.ts';
import { foldUsage } from './usage.ts';

/** An Event to record on the Key. Messages never hold anything secret. */
export interface PlannedEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/**
 * An action on a key's material or lifecycle, for the audit log (operator/audit.ts). One per
 * change the plan makes; the reconciler records them once the change is written.
 */
export interface PlannedAction {
  /**
   * `create`, `adopt`, `update`, `enable`, `disable`, `rotate`, `request-deletion`,
   * `cancel-deletion`, `destroy` (docs/audit.md "Operator records").
   */
  operation: string;
  /** The key version the action made current (create, rotate) or left current. */
  version?: number;
  /**
   * What asked for it: `spec.state=Disabled`, an annotation and its value, `deletionTimestamp`
   * (kubectl delete), `rotation-schedule`, `nonce-budget`, `new Key`.
   */
  trigger: string;
  /** `ok`, or the refusal's code (`MATERIAL_CONFLICT`). */
  outcome: string;
  /** Secret-free facts: the usage created, the fields updated, the time of erasure. */
  detail?: string;
}

/**
 * Why a Key has no usable material: another usage owns the name (`MaterialConflict`), or its
 * material was wrapped under a master key the operator does not hold (`MasterKeyMismatch`).
 */
export interface MaterialConflict {
  reason: 'MaterialConflict' | 'MasterKeyMismatch';
  message: string;
}

/** What to do for one Key. */
export interface ReconcilePlan {
  /** Add the finalizer before anything else. */
  addFinalizer: boolean;
  /** Remove the finalizer last, once the material is erased or released. */
  removeFinalizer: boolean;
  /** Delete the Key object: its spec-requested deletion fell due (the deletion path erases). */
  deleteObject: boolean;
  /**
   * The material after the plan: `undefined` leaves the Secret alone, `'erase'` deletes it,
   * otherwise it is written (created when `create`). Versions listed in `newVersions` have
   * `wrapped: ''` and must be filled in by the caller.
   */
  stored: StoredKey | 'erase' | undefined;
  /** True when no Secret exists yet. */
  create: boolean;
  /** Versions whose material the caller must generate and wrap. */
  newVersions: number[];
  /** Events to record, in order. */
  events: PlannedEvent[];
  /** Actions for the audit log, in order. */
  actions: PlannedAction[];
  /** Set when the Key cannot have material (a different usage owns the name). */
  conflict: MaterialConflict | undefined;
  /** When the Key must be looked at again (epoch ms), if ever. */
  requeueAt: number | undefined;
  /** False when the Key is released or gone: its status must not be written. */
  writeStatus: boolean;
}

/** Inputs of `planReconcile`. */
export interface PlanInput {
  key: KeyResource;
  /** The decoded material Secret, if it exists. */
  stored: StoredKey | undefined;
  now: number;
  lifecycle: LifecycleOptions;
  /** The engines' usage reports for this key (`reportsForKey`), folded in at most once per interval. */
  usage?: { reports: readonly UsageReport[]; minIntervalMs: number };
  /**
   * Set when `stored` was wrapped under a master key the operator does not hold (the message says
   * what to do): nothing is written, generated or erased until the right master key is back.
   */
  masterKeyMismatch?: string;
}

/** The KeySpec of a Key (the apiserver applied the defaults; these fallbacks mirror them). */
export function specOf(key: KeyResource): KeySpec {
  const s = key.spec;
  const spec: KeySpec = {
    usage: s.usage,
    convergent: s.convergent ?? false,
    boundary: s.boundary ?? 'Global',
    rotation: { enabled: s.rotation?.enabled ?? true, periodDays: s.rotation?.periodDays ?? 90 },
    memo: s.memo ?? '',
  };
  if (s.region !== undefined) spec.region = s.region;
  return spec;
}

/** Decides what to do for `input.key`. */
export function planReconcile(input: PlanInput): ReconcilePlan {
  const { key, stored, now } = input;
  const m = key.metadata;
  const plan: ReconcilePlan = {
    addFinalizer: false,
    removeFinalizer: false,
    deleteObject: false,
    stored: undefined,
    create: false,
    newVersions: [],
    events: [],
    actions: [],
    conflict: undefined,
    requeueAt: undefined,
    writeStatus: true,
  };
  const hasFinalizer = m.finalizers?.includes(FINALIZER) ?? false;
  const owned = stored !== undefined && stored.ownerUid !== undefined && stored.ownerUid === m.uid;
  if (stored !== undefined && input.masterKeyMismatch !== undefined) {
    return planMasterKeyMismatch(input, plan, hasFinalizer, input.masterKeyMismatch);
  }
  const deletionTime = kubeTimeMs(m.deletionTimestamp);
  if (deletionTime !== undefined) return planDeletion(input, plan, hasFinalizer, owned, deletionTime);

  plan.addFinalizer = !hasFinalizer;
  const spec = specOf(key);
  let current: StoredKey;
  if (stored === undefined) {
    current = {
      record: createKeyRecord(
        {
          namespace: m.namespace,
          name: m.name,
          spec,
          firstVersion: { version: 1, createdTime: now, wrapped: '' },
        },
        now,
      ),
      ownerUid: m.uid ?? '',
    };
    // A rotate value present at creation is not a new value: record it without rotating.
    const rotate = m.annotations?.[ROTATE_ANNOTATION];
    if (rotate) current.rotateHandled = rotate;
    plan.create = true;
    plan.newVersions.push(1);
    plan.events.push({
      type: 'Normal',
      reason: 'Created',
      message: `created ${spec.usage} material, version 1`,
    });
    plan.actions.push({
      operation: 'create',
      version: 1,
      trigger: 'new Key',
      outcome: 'ok',
      detail: describe(spec.usage, spec.convergent),
    });
  } else if (!owned) {
    const r = stored.record;
    if (r.usage !== spec.usage || r.convergent !== spec.convergent) {
      plan.conflict = {
        reason: 'MaterialConflict',
        message:
          `material kept for an ${describe(r.usage, r.convergent)} key of this name cannot be adopted by an ` +
          `${describe(spec.usage, spec.convergent)} Key; delete this Key or re-apply it with the original usage`,
      };
      if (key.status?.conditions?.find((c) => c.type === 'Ready')?.reason !== 'MaterialConflict') {
        plan.events.push({ type: 'Warning', reason: 'MaterialConflict', message: plan.conflict.message });
        plan.actions.push({
          operation: 'adopt',
          version: r.currentVersion,
          trigger: 'new Key',
          outcome: 'MATERIAL_CONFLICT',
          detail: `kept material is ${describe(r.usage, r.convergent)}, the Key asks for ${describe(spec.usage, spec.convergent)}`,
        });
      }
      return plan;
    }
    current = { ...stored, ownerUid: m.uid ?? '' };
    plan.events.push({
      type: 'Normal',
      reason: 'Adopted',
      message: `took back the existing material (state ${r.state}, version ${r.currentVersion})`,
    });
    plan.actions.push({
      operation: 'adopt',
      version: r.currentVersion,
      trigger: 'new Key',
      outcome: 'ok',
      detail: `state ${r.state}`,
    });
  } else {
    current = { ...stored };
  }
  let changed = plan.create || !owned;

  // Spec fields that may change: memo and rotation (through the lifecycle's own PATCH rule).
  const r0 = current.record;
  if (
    r0.memo !== spec.memo ||
    r0.rotation.enabled !== spec.rotation.enabled ||
    r0.rotation.periodDays !== spec.rotation.periodDays
  ) {
    current = { ...current, record: applyKeyUpdate(r0, { memo: spec.memo, rotation: spec.rotation }, now) };
    changed = true;
    plan.actions.push({
      operation: 'update',
      version: r0.currentVersion,
      trigger: 'spec',
      outcome: 'ok',
      detail: updatedFields(r0, spec),
    });
  }

  // The desired state, level-triggered.
  const desired = key.spec.state ?? 'Enabled';
  const steps: LifecycleAction[] = [];
  const state = current.record.state;
  if (desired === 'PendingDeletion' && state !== 'PendingDeletion') steps.push('request-deletion');
  if (desired !== 'PendingDeletion' && state === 'PendingDeletion') steps.push('cancel-deletion');
  if (desired === 'Enabled' && (state === 'Disabled' || state === 'PendingDeletion')) steps.push('enable');
  if (desired === 'Disabled' && state === 'Enabled') steps.push('disable');
  for (const action of steps) {
    const result = transition(current.record, action, now, input.lifecycle);
    if (!result.ok) continue;
    current = { ...current, record: result.record };
    changed = true;
    plan.events.push(stateEvent(action, result.record));
    plan.actions.push(stateAction(action, result.record, `spec.state=${desired}`));
    if (action === 'request-deletion') warnIfRecentlyUsed(result.record, now, plan);
  }

  // Manual rotation: each new annotation value rotates once.
  const rotate = m.annotations?.[ROTATE_ANNOTATION];
  if (rotate && rotate !== current.rotateHandled) {
    const result = transition(current.record, 'rotate', now, input.lifecycle);
    if (result.ok) {
      current = addVersions(current, result.effects, now, plan);
      current.rotateHandled = rotate;
      changed = true;
      plan.events.push({
        type: 'Normal',
        reason: 'Rotated',
        message: `manual rotation (${ROTATE_ANNOTATION}=${rotate}): version ${current.record.currentVersion} is current`,
      });
      plan.actions.push({
        operation: 'rotate',
        version: current.record.currentVersion,
        trigger: `${ROTATE_ANNOTATION}=${rotate}`,
        outcome: 'ok',
      });
    }
  }

  // The engines' usage reports, at most once per interval (each fold is a Secret write); usage
  // that has to wait for the interval brings the Key back when it ends.
  let usageDueAt: number | undefined;
  if (input.usage !== undefined) {
    const folded = foldUsage(current, m.uid, input.usage.reports);
    const allowedAt = (current.usageFoldedTime ?? 0) + input.usage.minIntervalMs;
    // A version that reached its nonce budget is folded (and rotated) at once, not at the interval.
    const atBudget =
      folded !== undefined &&
      nonceBudgetReached(folded.record, input.lifecycle.nonceBudget ?? DEFAULT_NONCE_BUDGET);
    if (folded !== undefined && (now >= allowedAt || atBudget)) {
      current = { ...folded, usageFoldedTime: now };
      changed = true;
    } else if (folded !== undefined) {
      usageDueAt = allowedAt;
    }
  }

  // What the schedule says is due now.
  const evaluation = evaluate(current.record, now, input.lifecycle);
  const destroyDue = evaluation.due.some((e) => e.type === 'destroy');
  const scheduled = evaluation.due.filter((e) => e.type === 'add-version');
  if (scheduled.length > 0) {
    const before = current.record;
    current = addVersions(current, scheduled, now, plan);
    changed = true;
    plan.events.push(rotationEvent(before, scheduled, current.record.currentVersion, input.lifecycle));
    plan.actions.push({
      operation: 'rotate',
      version: current.record.currentVersion,
      trigger: scheduled.some((e) => e.type === 'add-version' && e.reason === 'nonce-budget')
        ? 'nonce-budget'
        : 'rotation-schedule',
      outcome: 'ok',
    });
  }
  const deleteNow = m.annotations?.[DELETE_NOW_ANNOTATION] === 'true';
  if (current.record.state === 'PendingDeletion' && (destroyDue || deleteNow)) {
    // The Key goes away: delete the object; the deletion path erases the material and releases it.
    plan.deleteObject = true;
  }
  const wake = [evaluation.nextWakeTime, usageDueAt].filter((t): t is number => t !== undefined);
  plan.requeueAt = plan.deleteObject || wake.length === 0 ? undefined : Math.min(...wake);
  if (changed) plan.stored = current;
  return plan;
}

/**
 * The material was wrapped under another master key: write nothing (no material over it, no
 * rotation, no erasure), report `Ready=False` reason `MasterKeyMismatch` and warn once. A restored
 * master-key Secret wakes every Key (operator/master-key.ts), and the next pass proceeds.
 */
function planMasterKeyMismatch(
  input: PlanInput,
  plan: ReconcilePlan,
  hasFinalizer: boolean,
  message: string,
): ReconcilePlan {
  const key = input.key;
  plan.conflict = { reason: 'MasterKeyMismatch', message };
  plan.addFinalizer = !hasFinalizer && kubeTimeMs(key.metadata.deletionTimestamp) === undefined;
  if (key.status?.conditions?.find((c) => c.type === 'Ready')?.reason !== 'MasterKeyMismatch') {
    plan.events.push({ type: 'Warning', reason: 'MasterKeyMismatch', message });
  }
  return plan;
}

/** The Event of an automatic rotation, saying why (the schedule, or the nonce budget). */
function rotationEvent(
  before: KeyRecord,
  effects: readonly LifecycleEffect[],
  current: number,
  lifecycle: LifecycleOptions,
): PlannedEvent {
  const budget = effects.some((e) => e.type === 'add-version' && e.reason === 'nonce-budget');
  if (!budget) {
    return {
      type: 'Normal',
      reason: 'Rotated',
      message: `scheduled rotation: version ${current} is current`,
    };
  }
  const spent = before.versions.find((v) => v.version === before.currentVersion)?.nonceCount ?? 0;
  return {
    type: 'Normal',
    reason: 'Rotated',
    message:
      `nonce-budget rotation: version ${before.currentVersion} reached its budget of ` +
      `${lifecycle.nonceBudget ?? DEFAULT_NONCE_BUDGET} random-nonce encryptions (${spent} counted)` +
      `${before.rotation.enabled ? '' : ', although automatic rotation is off'}; version ${current} is current`,
  };
}

/** The deletion path: the Key has a deletionTimestamp. */
function planDeletion(
  input: PlanInput,
  plan: ReconcilePlan,
  hasFinalizer: boolean,
  owned: boolean,
  deletionTime: number,
): ReconcilePlan {
  const { key, stored, now } = input;
  const annotations = key.metadata.annotations ?? {};
  if (!hasFinalizer) {
    plan.writeStatus = false;
    return plan;
  }
  if (stored === undefined || !owned) {
    // Nothing of ours to erase (never created, already erased, or another Key's material).
    plan.removeFinalizer = true;
    plan.writeStatus = false;
    return plan;
  }
  let current: StoredKey = { ...stored };
  if (annotations[CANCEL_DELETION_ANNOTATION] === 'true') {
    const action: LifecycleAction =
      current.record.state === 'PendingDeletion' ? 'cancel-deletion' : 'disable';
    const result = transition(current.record, action, now, input.lifecycle);
    if (result.ok) current = { ...current, record: result.record };
    const { ownerUid: _released, ...rest } = current;
    plan.stored = rest;
    plan.removeFinalizer = true;
    plan.writeStatus = false;
    plan.events.push({
      type: 'Normal',
      reason: 'DeletionCancelled',
      message: 'deletion cancelled: the material is kept as Disabled and the Key is released',
    });
    plan.actions.push({
      operation: 'cancel-deletion',
      version: current.record.currentVersion,
      trigger: `${CANCEL_DELETION_ANNOTATION}=true`,
      outcome: 'ok',
      detail: 'the material is kept as Disabled; the Key object is released',
    });
    return plan;
  }
  if (current.record.state !== 'PendingDeletion') {
    // kubectl delete requests deletion at deletionTimestamp: scheduled = deletionTimestamp + delay.
    const result = transition(current.record, 'request-deletion', deletionTime, input.lifecycle);
    if (result.ok) {
      current = { ...current, record: result.record };
      plan.stored = current;
      plan.events.push(stateEvent('request-deletion', result.record));
      plan.actions.push(stateAction('request-deletion', result.record, 'deletionTimestamp'));
      warnIfRecentlyUsed(result.record, now, plan);
    }
  }
  const deleteNow = annotations[DELETE_NOW_ANNOTATION] === 'true';
  const destroy = deleteNow
    ? transition(current.record, 'delete-now', now, input.lifecycle).ok
    : evaluate(current.record, now, input.lifecycle).due.some((e) => e.type === 'destroy');
  if (destroy) {
    plan.stored = 'erase';
    plan.removeFinalizer = true;
    plan.writeStatus = false;
    plan.events.push({
      type: 'Normal',
      reason: 'Destroyed',
      message: deleteNow
        ? `material erased at once (${DELETE_NOW_ANNOTATION})`
        : 'material erased: the deletion delay has passed',
    });
    plan.actions.push({
      operation: 'destroy',
      version: current.record.currentVersion,
      trigger: deleteNow ? `${DELETE_NOW_ANNOTATION}=true` : 'deletion-schedule',
      outcome: 'ok',
      detail: `all ${current.record.versions.length} versions erased`,
    });
    return plan;
  }
  plan.requeueAt = current.record.deletionScheduledTime;
  return plan;
}

/** Carries out `add-version` effects on the record, with material left for the caller. */
function addVersions(
  current: StoredKey,
  effects: readonly LifecycleEffect[],
  now: number,
  plan: ReconcilePlan,
): StoredKey {
  let record: KeyRecord = current.record;
  for (const effect of effects) {
    if (effect.type !== 'add-version') continue;
    record = applyNewVersion(record, effect, { version: effect.version, createdTime: now, wrapped: '' });
    plan.newVersions.push(effect.version);
  }
  return { ...current, record };
}

/** §2: deleting a key used recently deserves a warning (it may still protect live data). */
function warnIfRecentlyUsed(record: KeyRecord, now: number, plan: ReconcilePlan): void {
  if (!recentlyUsed(record, now) || record.lastUsedTime === undefined) return;
  plan.events.push({
    type: 'Warning',
    reason: 'RecentlyUsed',
    message: `deletion requested for a key last used at ${toKubeTime(record.lastUsedTime)}; data it protects becomes unreadable once it is erased`,
  });
}

function stateEvent(action: LifecycleAction, record: KeyRecord): PlannedEvent {
  switch (action) {
    case 'enable':
      return { type: 'Normal', reason: 'Enabled', message: 'the key is enabled' };
    case 'disable':
      return { type: 'Normal', reason: 'Disabled', message: 'the key is disabled' };
    case 'request-deletion':
      return {
        type: 'Normal',
        reason: 'DeletionRequested',
        message: `deletion requested: the material will be erased at ${toKubeTime(record.deletionScheduledTime ?? 0)}`,
      };
    case 'cancel-deletion':
      return {
        type: 'Normal',
        reason: 'DeletionCancelled',
        message: 'deletion cancelled: the key is disabled',
      };
    default:
      return { type: 'Normal', reason: 'StateChanged', message: `the key is ${record.state}` };
  }
}

function stateAction(action: LifecycleAction, record: KeyRecord, trigger: string): PlannedAction {
  const a: PlannedAction = { operation: action, version: record.currentVersion, trigger, outcome: 'ok' };
  if (action === 'request-deletion') a.detail = `erasure at ${toKubeTime(record.deletionScheduledTime ?? 0)}`;
  return a;
}

/** The spec fields an update changed (values of rotation; the memo by name only). */
function updatedFields(before: KeyRecord, spec: KeySpec): string {
  const changed: string[] = [];
  if (before.rotation.enabled !== spec.rotation.enabled)
    changed.push(`rotation.enabled ${before.rotation.enabled}->${spec.rotation.enabled}`);
  if (before.rotation.periodDays !== spec.rotation.periodDays)
    changed.push(`rotation.periodDays ${before.rotation.periodDays}->${spec.rotation.periodDays}`);
  if (before.memo !== spec.memo) changed.push('memo');
  return changed.join(', ');
}

function describe(usage: string, convergent: boolean): string {
  return convergent ? `${usage} convergent` : usage;
}
