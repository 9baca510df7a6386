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
  NONCE_COUNTER,
  type UsageCursor,
  type UsageReport,
} from '../engine/cluster/usage-report.ts';
import type { KeyOperation, KeyVersionRecord } from '../engine/keys/model.ts';
import type { StoredKey } from '../engine/kube/material-secret.ts';

/**
 * Per engine instance (`identity/instance`): the cumulative counts already folded, by operation
 * and by `v<N>.nonces` (the random-nonce reservations of version N).
 */
export type UsageSeen = Record<string, Record<string, number>>;

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
  const nonces = foldNonces(r.versions, credited, id, stored.usageSeen ?? {});
  for (const [source, cursor] of Object.entries(nonces.seen)) {
    if (live.has(source)) usageSeen[source] = { ...usageSeen[source], ...cursor };
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
  // A report that only reserved nonces carries lastUsedTime 0: not a use.
  const reported = agg === undefined || agg.lastUsedTime <= 0 ? undefined : agg.lastUsedTime;
  const lastUsedTime =
    reported === undefined ? r.lastUsedTime : Math.max(r.lastUsedTime ?? Number.NEGATIVE_INFINITY, reported);
  const seenChanged = JSON.stringify(usageSeen) !== JSON.stringify(stored.usageSeen ?? {});
  if (!added && !nonces.added && lastUsedTime === r.lastUsedTime && !seenChanged) return undefined;
  const record = { ...r, operationCounts: counts, versions: nonces.versions };
  if (lastUsedTime !== undefined) record.lastUsedTime = lastUsedTime;
  const out: StoredKey = { ...stored, record };
  if (Object.keys(usageSeen).length > 0) out.usageSeen = usageSeen;
  else delete out.usageSeen;
  return out;
}

/**
 * Folds the engines' random-nonce reservations (per-version counter `nonces`, cumulative per
 * instance; engine/cluster/nonce-reservations.ts) into the versions' `nonceCount`: each instance
 * adds what it reserved beyond the cursor. The shards of one instance count once (their maximum).
 * Reservations for a version the record does not have are ignored. Pure.
 */
export function foldNonces(
  versions: KeyVersionRecord[],
  reports: readonly UsageReport[],
  id: string,
  seen: UsageSeen,
): { versions: KeyVersionRecord[]; seen: UsageSeen; added: boolean } {
  const latest: UsageSeen = {};
  for (const report of reports) {
    const entry = report.keys[id];
    if (entry?.versions === undefined || typeof entry.versions !== 'object') continue;
    const source = `${report.identity}/${report.instance}`;
    const cursor = latest[source] ?? {};
    latest[source] = cursor;
    for (const [v, counters] of Object.entries(entry.versions)) {
      const n = counters?.[NONCE_COUNTER];
      if (!/^[1-9][0-9]{0,9}$/.test(v) || typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
        continue;
      const name = `v${v}.${NONCE_COUNTER}`;
      cursor[name] = Math.max(cursor[name] ?? 0, n);
    }
  }
  const added = new Map<number, number>();
  const next: UsageSeen = {};
  for (const [source, cursor] of Object.entries(latest)) {
    next[source] = {};
    for (const [name, n] of Object.entries(cursor)) {
      const was = seen[source]?.[name] ?? 0;
      next[source][name] = Math.max(was, n);
      if (n > was) {
        const version = Number(name.slice(1, name.indexOf('.')));
        added.set(version, (added.get(version) ?? 0) + (n - was));
      }
    }
  }
  let any = false;
  const out = versions.map((v) => {
    const n = added.get(v.version);
    if (n === undefined) return v;
    any = true;
    return { ...v, nonceCount: (v.nonceCount ?? 0) + n };
  });
  return { versions: out, seen: next, added: any };
}
