/**
 * The one helper that writes status conditions. Every condition of a Key goes through
 * `setCondition`, so lastTransitionTime changes only when a condition's status changes (the
 * metav1.Condition contract); a new reason or message alone keeps the old time.
 */
import type { Condition } from '../engine/kube/key-resource.ts';
import { toKubeTime } from '../engine/kube/key-resource.ts';

/** What a caller states about one condition; the helper fills in lastTransitionTime. */
export interface ConditionUpdate {
  type: string;
  status: Condition['status'];
  reason: string;
  message: string;
  observedGeneration?: number;
}

/**
 * Returns `conditions` with `update` applied at `now` (epoch ms). Pure: the input array is not
 * modified. The order of existing conditions is kept; a new type is appended.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  update: ConditionUpdate,
  now: number,
): Condition[] {
  const list = [...(conditions ?? [])];
  const index = list.findIndex((c) => c.type === update.type);
  const previous = index >= 0 ? list[index] : undefined;
  const lastTransitionTime =
    previous !== undefined && previous.status === update.status
      ? previous.lastTransitionTime
      : toKubeTime(Math.floor(now / 1000) * 1000);
  const next: Condition = {
    type: update.type,
    status: update.status,
    reason: update.reason,
    message: update.message,
    lastTransitionTime,
  };
  if (update.observedGeneration !== undefined) next.observedGeneration = update.observedGeneration;
  if (index >= 0) list[index] = next;
  else list.push(next);
  return list;
}

/** Applies several updates in order through `setCondition`. */
export function setConditions(
  conditions: readonly Condition[] | undefined,
  updates: readonly ConditionUpdate[],
  now: number,
): Condition[] {
  let list = [...(conditions ?? [])];
  for (const update of updates) list = setCondition(list, update, now);
  return list;
}
