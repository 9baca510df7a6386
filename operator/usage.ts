/**
 * Folding the engines' usage reports (engine/cluster/usage-report.ts) into a key's stored record:
 * the operation counts grow by the uses not yet counted, and lastUsedTime moves to the latest use.
 * Pure. Exactness across restarts and fail-overs comes from keeping, in the same record (so in
 * the same conditional Secret write as the counts), how far each engine instance's cumulative
 * counters have already been counted: `StoredKey.usageSeen`. A fold therefore never counts a use
 * twice nor loses one, whichever operator replica does it.
 */
import {
  aggregateUsageReports,
  type KeyUsageReport,
  type UsageCursor,
  type UsageReport,
} from '../engine/cluster/usage-report.ts';
import type { KeyOperation } from '../engine/keys/model.ts';
import type { StoredKey } from '../engine/kube/material-secret.ts';

/** Per engine instance (`identity/instance`): the cumulative counts already folded. */
export type UsageSeen = Record<string, Partial<Record<KeyOperation, number>>>;

/** The reports narrowed to one key: every report's header, with at most that key's entry. */
export function reportsForKey(
  reports: readonly UsageReport[],
  namespace: string,
  name: string,
): UsageReport[] {
  const id = `${namespace}/${name}`;
  return reports.map((r) => {
    const entry: KeyUsageReport | undefined = r.keys?.[id];
    return { ...r, keys: entry === undefined ? {} : { [id]: entry } };
  });
}

/**
 * Folds `reports` (already narrowed with `reportsForKey`) into `stored`, whose owning Key has
 * uid `ownerUid`. Returns the new stored key, or undefined when nothing changed. Uses reported
 * against another uid (an earlier Key of the same name) are not credited. Instances whose report
 * is gone are dropped from `usageSeen`: reports come from an informer cache, so absent means
 * deleted, not a failed read.
 */
export function foldUsage(
  stored: StoredKey,
  ownerUid: string | undefined,
  reports: readonly UsageReport[],
): StoredKey | undefined {
  const r = stored.record;
  const id = `${r.namespace}/${r.name}`;
  const credited = reports.map((report) => {
    const entry = report.keys[id];
    if (
      entry === undefined ||
      (entry.uid !== undefined && ownerUid !== undefined && entry.uid !== ownerUid)
    ) {
      return { ...report, keys: {} };
    }
    return report;
  });
  const cursor: UsageCursor = { seen: {} };
  for (const [source, counts] of Object.entries(stored.usageSeen ?? {}))
    cursor.seen[source] = { [id]: counts };
  const { keys, cursor: next } = aggregateUsageReports(credited, cursor);
  const live = new Set(credited.map((x) => `${x.identity}/${x.instance}`));
  const usageSeen: UsageSeen = {};
  for (const [source, seen] of Object.entries(next.seen)) {
    const counts = seen[id];
    if (live.has(source) && counts !== undefined && Object.keys(counts).length > 0)
      usageSeen[source] = counts;
  }
  const agg = keys.get(id);
  const counts = { ...r.operationCounts };
  let added = false;
  for (const [op, n] of Object.entries(agg?.newCounts ?? {}) as Array<[KeyOperation, number]>) {
    if (n > 0) {
      counts[op] = (counts[op] ?? 0) + n;
      added = true;
    }
  }
  const lastUsedTime =
    agg === undefined
      ? r.lastUsedTime
      : Math.max(r.lastUsedTime ?? Number.NEGATIVE_INFINITY, agg.lastUsedTime);
  const seenChanged = JSON.stringify(usageSeen) !== JSON.stringify(stored.usageSeen ?? {});
  if (!added && lastUsedTime === r.lastUsedTime && !seenChanged) return undefined;
  const record = { ...r, operationCounts: counts };
  if (lastUsedTime !== undefined) record.lastUsedTime = lastUsedTime;
  const out: StoredKey = { ...stored, record };
  if (Object.keys(usageSeen).length > 0) out.usageSeen = usageSeen;
  else delete out.usageSeen;
  return out;
}
