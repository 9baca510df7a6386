/**
 * The one key lifecycle of PRODUCT.md §3: states, transitions, the deletion delay and the
 * automatic rotation schedule. Pure: it takes `(key, now)` and returns decisions; it never reads
 * a clock and knows nothing of files, HTTP or Kubernetes. The standalone store and the operator
 * both call it unchanged.
 *
 * Timers survive restarts because nothing here is kept in memory: every decision is recomputed
 * from the stored timestamps (`deletionScheduledTime`, `rotationAnchorTime`).
 *
 * Decisions documented here (a user of AWS KMS / Google Cloud KMS would expect them):
 * - `enable` on an Enabled key and `disable` on a Disabled key are idempotent no-ops (AWS
 *   EnableKey/DisableKey behave so); every other move outside the §3 table is KEY_STATE.
 * - A Disabled key may be rotated manually (so a suspect key can get fresh material before it is
 *   re-enabled), but is not rotated automatically. When it is re-enabled and a scheduled rotation
 *   was missed, it rotates once at the next evaluation (AWS KMS does the same).
 * - A PendingDeletion key is never rotated, manually or automatically.
 * - A key holds at most MAX_KEY_VERSIONS versions (crypto/limits.ts): at the cap a manual
 *   rotation is refused with KEY_STATE and automatic rotation stops (no next rotation time), so
 *   records and views stay bounded. Old versions are never dropped: they still decrypt.
 */
import { MAX_KEY_VERSIONS } from '../crypto/limits.ts';
import { KeywardError } from '../errors.ts';
import type {
  KeyOperation,
  KeyRecord,
  KeySpec,
  KeyState,
  KeyVersionRecord,
  RotationPolicy,
} from './model.ts';
import { DEFAULT_NONCE_BUDGET, nonceBudgetReached } from './nonce-budget.ts';

/** One hour, one day, in milliseconds. */
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

/** The deletion delay of §3: 72 hours. */
export const DEFAULT_DELETION_DELAY_MS = 72 * HOUR_MS;

/** How recent a use must be for a deletion request to carry a warning (§2 usage history). */
export const RECENT_USE_WINDOW_MS = 7 * DAY_MS;

/** Tunables of the lifecycle. Only tests and dev clusters shorten the delay. */
export interface LifecycleOptions {
  /** Time from a deletion request to destruction. `DEFAULT_DELETION_DELAY_MS` in production. */
  deletionDelayMs: number;
  /**
   * Random-nonce encryptions per key version before the key rotates by itself (nonce-budget.ts);
   * `DEFAULT_NONCE_BUDGET` (2^30) when absent.
   */
  nonceBudget?: number;
}

/** The production options. */
export const DEFAULT_LIFECYCLE_OPTIONS: Readonly<LifecycleOptions> = Object.freeze({
  deletionDelayMs: DEFAULT_DELETION_DELAY_MS,
});

/** The administrative actions of §3 (creation is `createKeyRecord`). */
export type LifecycleAction =
  | 'enable'
  | 'disable'
  | 'request-deletion'
  | 'cancel-deletion'
  | 'delete-now'
  | 'rotate';

/** A key's state, or `Destroyed` once its material is to be erased and the key removed. */
export type LifecycleState = KeyState | 'Destroyed';

/**
 * Something the caller must do with I/O, which the pure lifecycle cannot.
 * - `destroy`: erase the material and remove the key.
 * - `add-version`: generate fresh material for version `version`, wrap it, then call
 *   `applyNewVersion`. A `scheduled` rotation also moves the anchor to `anchorTime`; a
 *   `nonce-budget` rotation (the current version reached its nonce budget) does not, like a manual one.
 */
export type LifecycleEffect =
  | { type: 'destroy' }
  | { type: 'add-version'; version: number; reason: 'manual' }
  | { type: 'add-version'; version: number; reason: 'nonce-budget' }
  | { type: 'add-version'; version: number; reason: 'scheduled'; anchorTime: number };

/** The result of `transition`: a refusal, or the updated record and what to do. */
export type TransitionResult =
  | { ok: false; error: KeywardError }
  | {
      ok: true;
      /** The state after the action (and its effects) is carried out. */
      state: LifecycleState;
      /** The record with the new state and fields; unchanged for `rotate` and `delete-now`. */
      record: KeyRecord;
      /** I/O the caller must perform; empty for a pure state change. */
      effects: LifecycleEffect[];
      /** False for an idempotent no-op (enable an Enabled key, disable a Disabled key). */
      changed: boolean;
    };

/** The result of `evaluate`: where the key stands at `now` and when to look again. */
export interface Evaluation {
  /** The state once `due` is carried out. */
  state: LifecycleState;
  /** Effects whose time has come: at most one `destroy` or one scheduled `add-version`. */
  due: LifecycleEffect[];
  /** When something next becomes due, if ever (assuming `due` is carried out). */
  nextWakeTime: number | undefined;
  /** When the next automatic rotation will happen, if one is scheduled (after `due`). */
  nextRotationTime: number | undefined;
}

/** Inputs of `createKeyRecord`. */
export interface NewKey {
  namespace: string;
  name: string;
  spec: KeySpec;
  /** Version 1, its material already generated and wrapped by the caller. */
  firstVersion: KeyVersionRecord;
}

/**
 * `(new) → create → Enabled`: a new record with version 1 current. The rotation schedule counts
 * from creation.
 */
export function createKeyRecord(input: NewKey, now: number): KeyRecord {
  assertTime(now, 'now');
  if (input.firstVersion.version !== 1) throw internal('the first version of a key must be version 1');
  const record: KeyRecord = {
    usage: input.spec.usage,
    convergent: input.spec.convergent,
    boundary: input.spec.boundary,
    rotation: { ...input.spec.rotation },
    memo: input.spec.memo,
    namespace: input.namespace,
    name: input.name,
    state: 'Enabled',
    createdTime: now,
    currentVersion: 1,
    versions: [{ ...input.firstVersion }],
    rotationAnchorTime: now,
    operationCounts: {},
  };
  if (input.spec.region !== undefined) record.region = input.spec.region;
  return record;
}

/**
 * Applies one administrative action of the §3 table at `now`.
 *
 * For `request-deletion`, `now` is the request time: the operator passes the resource's
 * `deletionTimestamp`, so `deletionScheduledTime = deletionTimestamp + delay` (§8).
 * `rotate` returns the record unchanged with an `add-version` effect; a manual rotation never
 * moves `rotationAnchorTime`, so the automatic schedule is not shifted.
 */
export function transition(
  key: KeyRecord,
  action: LifecycleAction,
  now: number,
  opts: LifecycleOptions = DEFAULT_LIFECYCLE_OPTIONS,
): TransitionResult {
  assertTime(now, 'now');
  const s = key.state;
  switch (action) {
    case 'enable':
      if (s === 'Enabled') return unchanged(key);
      if (s === 'Disabled') return changed({ ...key, state: 'Enabled' });
      return refuse('a key pending deletion cannot be enabled; cancel the deletion first');
    case 'disable':
      if (s === 'Disabled') return unchanged(key);
      if (s === 'Enabled') return changed({ ...key, state: 'Disabled' });
      return refuse('a key pending deletion cannot be disabled; it is already unusable');
    case 'request-deletion': {
      if (s === 'PendingDeletion') return refuse('deletion of this key has already been requested');
      assertDelay(opts.deletionDelayMs);
      return changed({ ...key, state: 'PendingDeletion', deletionScheduledTime: now + opts.deletionDelayMs });
    }
    case 'cancel-deletion': {
      if (s !== 'PendingDeletion')
        return refuse('only a key pending deletion can have its deletion cancelled');
      const { deletionScheduledTime: _dropped, ...rest } = key;
      return changed({ ...rest, state: 'Disabled' });
    }
    case 'delete-now':
      if (s !== 'PendingDeletion') {
        return refuse('delete-now is only accepted for a key pending deletion; request deletion first');
      }
      return { ok: true, state: 'Destroyed', record: key, effects: [{ type: 'destroy' }], changed: true };
    case 'rotate':
      if (s === 'PendingDeletion') return refuse('a key pending deletion cannot be rotated');
      if (atVersionCap(key)) return refuse(VERSION_CAP_MESSAGE);
      return {
        ok: true,
        state: s,
        record: key,
        effects: [{ type: 'add-version', version: key.currentVersion + 1, reason: 'manual' }],
        changed: true,
      };
    default:
      return { ok: false, error: new KeywardError('INVALID_ARGUMENT', 'unknown lifecycle action') };
  }
}

/**
 * Like `transition`, but throws the KEY_STATE error instead of returning it. For callers that
 * work with exceptions (the HTTP service); the operator prefers `transition` to record a reason.
 */
export function transitionOrThrow(
  key: KeyRecord,
  action: LifecycleAction,
  now: number,
  opts: LifecycleOptions = DEFAULT_LIFECYCLE_OPTIONS,
): Extract<TransitionResult, { ok: true }> {
  const result = transition(key, action, now, opts);
  if (!result.ok) throw result.error;
  return result;
}

/**
 * Decides what is due for `key` at `now` and when to look again. Idempotent: evaluating the same
 * stored record at any later time, e.g. after a restart in the middle of a wait, gives the same
 * schedule, and nothing happens before its time.
 *
 * - PendingDeletion: `destroy` is due once `now >= deletionScheduledTime` (a key is still there
 *   one millisecond before the delay has elapsed, and gone at the delay). No rotation.
 * - Enabled with rotation enabled: a scheduled rotation is due once
 *   `now >= rotationAnchorTime + periodDays`. It happens ONCE even if the process was down for
 *   several periods, and its new anchor is the latest due time on the schedule's grid that is
 *   `<= now` (`anchor + k·period`), so the schedule is not shifted by the downtime.
 * - Disabled: no automatic rotation (see the module note); nothing to wake for.
 * - Enabled, whatever the rotation policy: when the current version has reached its nonce budget
 *   (nonce-budget.ts), a `nonce-budget` rotation is due now (unless a scheduled one is due, which
 *   gives a new version too).
 */
export function evaluate(
  key: KeyRecord,
  now: number,
  opts: LifecycleOptions = DEFAULT_LIFECYCLE_OPTIONS,
): Evaluation {
  const evaluation = evaluateSchedule(key, now);
  if (
    key.state === 'Enabled' &&
    evaluation.due.length === 0 &&
    nonceBudgetReached(key, opts.nonceBudget ?? DEFAULT_NONCE_BUDGET)
  ) {
    evaluation.due.push({ type: 'add-version', version: key.currentVersion + 1, reason: 'nonce-budget' });
  }
  return evaluation;
}

function evaluateSchedule(key: KeyRecord, now: number): Evaluation {
  assertTime(now, 'now');
  if (key.state === 'PendingDeletion') {
    const at = key.deletionScheduledTime;
    if (at === undefined || !Number.isFinite(at)) {
      // Never destroy on a corrupt record: material loss cannot be undone.
      throw internal('a key pending deletion has no deletionScheduledTime');
    }
    if (now >= at)
      return {
        state: 'Destroyed',
        due: [{ type: 'destroy' }],
        nextWakeTime: undefined,
        nextRotationTime: undefined,
      };
    return { state: 'PendingDeletion', due: [], nextWakeTime: at, nextRotationTime: undefined };
  }
  if (key.state !== 'Enabled' || !key.rotation.enabled || atVersionCap(key)) {
    return { state: key.state, due: [], nextWakeTime: undefined, nextRotationTime: undefined };
  }
  const period = rotationPeriodMs(key.rotation);
  const firstDue = key.rotationAnchorTime + period;
  if (now < firstDue)
    return { state: key.state, due: [], nextWakeTime: firstDue, nextRotationTime: firstDue };
  const missed = Math.floor((now - key.rotationAnchorTime) / period);
  const anchorTime = key.rotationAnchorTime + missed * period;
  const next = anchorTime + period;
  return {
    state: key.state,
    due: [{ type: 'add-version', version: key.currentVersion + 1, reason: 'scheduled', anchorTime }],
    nextWakeTime: next,
    nextRotationTime: next,
  };
}

/**
 * The next automatic rotation time of `key` as the API and status show it, or undefined when the
 * key will not rotate automatically (rotation off, Disabled, PendingDeletion). When a rotation is
 * overdue (not yet carried out), this is the overdue time itself.
 */
export function nextRotationTime(key: KeyRecord): number | undefined {
  if (key.state !== 'Enabled' || !key.rotation.enabled || atVersionCap(key)) return undefined;
  return key.rotationAnchorTime + rotationPeriodMs(key.rotation);
}

/**
 * Records the new version an `add-version` effect asked for and makes it current. A scheduled
 * rotation also moves `rotationAnchorTime` to the effect's grid point; a manual one does not.
 *
 * Refuses (KEY_STATE) a stale effect, i.e. one computed before another version was added, so a
 * rotation raced by another cannot add a duplicate version number.
 */
export function applyNewVersion(
  key: KeyRecord,
  effect: Extract<LifecycleEffect, { type: 'add-version' }>,
  version: KeyVersionRecord,
): KeyRecord {
  if (effect.version !== key.currentVersion + 1 || version.version !== effect.version) {
    throw new KeywardError('KEY_STATE', 'the key changed while it was being rotated; try again');
  }
  if (key.state === 'PendingDeletion')
    throw new KeywardError('KEY_STATE', 'a key pending deletion cannot be rotated');
  if (atVersionCap(key)) throw new KeywardError('KEY_STATE', VERSION_CAP_MESSAGE);
  const next: KeyRecord = {
    ...key,
    currentVersion: version.version,
    versions: [...key.versions, { ...version }],
  };
  if (effect.reason === 'scheduled') next.rotationAnchorTime = effect.anchorTime;
  return next;
}

/**
 * Applies a PATCH (memo and/or rotation policy) at `now`. A PATCH never rotates by itself:
 * - an unchanged policy leaves the anchor alone (the operator re-applies specs freely);
 * - turning rotation on sets the anchor to `now`: the first rotation is one period after that;
 * - changing the period while rotation is on keeps the schedule's anchor (the next rotation is one
 *   new period after the last scheduled rotation or creation), unless that time is already past,
 *   in which case the anchor becomes `now` (one new period after the change) rather than
 *   rotating as a surprise side effect. Use `rotate` for an immediate rotation.
 */
export function applyKeyUpdate(
  key: KeyRecord,
  update: { memo?: string; rotation?: Partial<RotationPolicy> },
  now: number,
): KeyRecord {
  assertTime(now, 'now');
  const next: KeyRecord = { ...key, rotation: { ...key.rotation } };
  if (update.memo !== undefined) next.memo = update.memo;
  if (update.rotation === undefined) return next;
  const enabled = update.rotation.enabled ?? key.rotation.enabled;
  const periodDays = update.rotation.periodDays ?? key.rotation.periodDays;
  next.rotation = { enabled, periodDays };
  if (!enabled) return next;
  if (!key.rotation.enabled) {
    next.rotationAnchorTime = now;
  } else if (periodDays !== key.rotation.periodDays && key.rotationAnchorTime + periodDays * DAY_MS <= now) {
    next.rotationAnchorTime = now;
  }
  return next;
}

/**
 * Records `count` uses of `op` at `now` (pure; the service coalesces and flushes these). The last
 * use time never moves backwards, so out-of-order flushes are harmless.
 */
export function recordUsage(key: KeyRecord, op: KeyOperation, now: number, count = 1): KeyRecord {
  assertTime(now, 'now');
  if (!Number.isSafeInteger(count) || count < 1) throw internal('usage count must be a positive integer');
  const lastUsedTime = key.lastUsedTime === undefined ? now : Math.max(key.lastUsedTime, now);
  return {
    ...key,
    lastUsedTime,
    operationCounts: { ...key.operationCounts, [op]: (key.operationCounts[op] ?? 0) + count },
  };
}

/** True when the key was used within `withinMs` before `now`: deleting it deserves a warning. */
export function recentlyUsed(key: KeyRecord, now: number, withinMs = RECENT_USE_WINDOW_MS): boolean {
  return key.lastUsedTime !== undefined && now - key.lastUsedTime < withinMs;
}

/**
 * Refuses every cryptographic operation on a key that is not Enabled (§3), with a clear
 * KEY_STATE error.
 */
export function checkUsable(key: Pick<KeyRecord, 'state'>): void {
  if (key.state === 'Enabled') return;
  if (key.state === 'Disabled') throw new KeywardError('KEY_STATE', 'the key is disabled');
  throw new KeywardError('KEY_STATE', 'the key is pending deletion');
}

/** The rotation period in milliseconds. */
export function rotationPeriodMs(rotation: RotationPolicy): number {
  return rotation.periodDays * DAY_MS;
}

// ---- helpers ---------------------------------------------------------------------------------

function unchanged(key: KeyRecord): TransitionResult {
  return { ok: true, state: key.state, record: key, effects: [], changed: false };
}

function changed(record: KeyRecord): TransitionResult {
  return { ok: true, state: record.state, record, effects: [], changed: true };
}

const VERSION_CAP_MESSAGE = `the key has ${MAX_KEY_VERSIONS} versions, the most a key may hold; create a new key and re-encrypt to it`;

/** True when the key may not get another version. */
export function atVersionCap(key: Pick<KeyRecord, 'versions'>): boolean {
  return key.versions.length >= MAX_KEY_VERSIONS;
}

function refuse(message: string): TransitionResult {
  return { ok: false, error: new KeywardError('KEY_STATE', message) };
}

function internal(message: string): KeywardError {
  return new KeywardError('INTERNAL', message);
}

/** Times are integer milliseconds since the epoch; anything else is a programming error. */
function assertTime(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw internal(`${what} must be a millisecond timestamp`);
}

function assertDelay(value: number): void {
  if (!Number.isSafeInteger(value) || value < 0)
    throw internal('deletionDelayMs must be a non-negative integer');
}
