/**
 * Usage history in cluster mode. Engines may not write Keys or material (PRODUCT.md §8: only the
 * leader operator writes), so each engine replica counts its operations per key and publishes the
 * counters in ConfigMaps of its own in its namespace. The leader operator reads those reports,
 * aggregates them with {@link aggregateUsageReports} and writes `lastUsedTime` and the operation
 * counts.
 *
 * Counters are cumulative for the life of one engine process (`instance`), so a lost or repeated
 * read of a report never loses or double-counts uses: the aggregator takes the difference from the
 * counts it last saw for the same instance (its cursor). A new instance (a restarted engine)
 * starts from zero.
 *
 * **Shards** (format 2). One ConfigMap per replica stopped scaling at about 5,000 used keys (the
 * 1 MiB object limit), so a replica spreads its keys over `shards` ConfigMaps by a hash of the key
 * (`keyward-usage-<identity>` for shard 0, `keyward-usage-<identity>.<i>` for the others), with at
 * most about {@link USAGE_SHARD_KEYS} keys each (a few hundred KB at worst). The shard count
 * doubles as the key count grows and never shrinks within an instance; only shards whose counters
 * moved are rewritten. The aggregator merges the shards of one instance, so a key that moves
 * between shards (when the count doubles) is still counted once.
 *
 * **Per-version counters.** An entry may carry `versions: {"<N>": {"<counter>": n}}`, cumulative
 * like `counts` (for the random-nonce budget of issue #11: encryptions per key version). The
 * cursor is keyed by counter name, so a consumer folds them the same way as the operation counts.
 */
import type { KeyOperation } from '../keys/model.ts';
import { KEY_OPERATIONS } from '../keys/model.ts';

/** Label on every usage-report ConfigMap; the operator lists with `keyward.io/usage-report=true`. */
export const USAGE_REPORT_LABEL = 'keyward.io/usage-report';
/** ConfigMap name prefix: `keyward-usage-<identity>`. */
export const USAGE_REPORT_PREFIX = 'keyward-usage-';
/** `data` entry holding the JSON report. */
export const USAGE_REPORT_ENTRY = 'usage.json';
/** Format version of the reports written: 2 adds `shard`/`shards` (1 is still read). */
export const USAGE_REPORT_FORMAT = 2;
/** Target keys per shard: at most ~250 bytes each, a shard stays far below the 1 MiB limit. */
export const USAGE_SHARD_KEYS = 1000;

/** Uses of one key by one engine instance since it started. */
export interface KeyUsageReport {
  namespace: string;
  name: string;
  /** uid of the Key object the uses were made against, so a re-created Key is not credited. */
  uid?: string;
  /** Epoch ms of the latest use. */
  lastUsedTime: number;
  /** Cumulative counts per operation since `startedTime`. */
  counts: Partial<Record<KeyOperation, number>>;
  /** Cumulative per-version counters since `startedTime`, by version number (see the module comment). */
  versions?: Record<string, Record<string, number>>;
}

/** What one engine replica publishes (the ConfigMap's `usage.json`). */
export interface UsageReport {
  format: number;
  /** The replica (pod name, usually). */
  identity: string;
  /** Random per process start: counters restart from zero with a new instance. */
  instance: string;
  startedTime: number;
  reportedTime: number;
  /** This ConfigMap's shard, 0 ≤ shard < shards (format 2; format 1 is one shard). */
  shard?: number;
  shards?: number;
  /** Keyed by `<namespace>/<name>`. */
  keys: Record<string, KeyUsageReport>;
}

const READABLE_FORMATS: ReadonlySet<unknown> = new Set([1, 2]);

/** What the aggregator remembers between calls: per `identity/instance`, the counts last seen. */
export interface UsageCursor {
  seen: Record<string, Record<string, Partial<Record<KeyOperation, number>>>>;
}

/** Usage of one key, aggregated over every report. */
export interface AggregatedUsage {
  namespace: string;
  name: string;
  /** The Key uid the latest use was made against, when reported. */
  uid?: string;
  /** The latest use seen in any report. */
  lastUsedTime: number;
  /** New uses since the cursor passed in (all uses in the reports when there was none). */
  newCounts: Partial<Record<KeyOperation, number>>;
}

/**
 * Aggregates usage reports (pure). `lastUsedTime` is the latest over all replicas; `newCounts` are
 * the uses not yet seen by `cursor`, so a caller that adds them to stored counts and keeps the
 * returned cursor counts every use exactly once. Malformed or foreign entries are skipped. Keys are
 * `<namespace>/<name>`.
 */
export function aggregateUsageReports(
  reports: readonly UsageReport[],
  cursor: UsageCursor = { seen: {} },
): { keys: Map<string, AggregatedUsage>; cursor: UsageCursor } {
  const keys = new Map<string, AggregatedUsage>();
  const valid = reports.filter(
    (r) => READABLE_FORMATS.has(r?.format) && typeof r.keys === 'object' && r.keys !== null,
  );
  // A report missing from this call (a read that failed) keeps its place in the cursor, so its
  // uses are not counted again when it comes back; an identity that restarted (a new instance)
  // replaces its old entry.
  const live = new Set(valid.map((r) => `${r.identity}/${r.instance}`));
  const restarted = new Set(valid.map((r) => `${r.identity}/`));
  const next: UsageCursor = { seen: {} };
  for (const [source, seen] of Object.entries(cursor.seen)) {
    const identity = source.slice(0, source.lastIndexOf('/') + 1);
    if (!live.has(source) && !restarted.has(identity)) next.seen[source] = seen;
  }
  for (const report of valid) {
    const source = `${report.identity}/${report.instance}`;
    const previous = cursor.seen[source] ?? {};
    // The shards of one instance share its cursor entry.
    const seen = next.seen[source] ?? { ...previous };
    next.seen[source] = seen;
    for (const [id, entry] of Object.entries(report.keys)) {
      if (!isKeyUsage(entry) || id !== `${entry.namespace}/${entry.name}`) continue;
      // Against the running value: a key found in two shards of one instance (while the shard
      // count doubles) is not counted twice.
      const before = seen[id] ?? {};
      const delta: Partial<Record<KeyOperation, number>> = {};
      for (const op of KEY_OPERATIONS) {
        const now = entry.counts[op] ?? 0;
        const was = before[op] ?? 0;
        // Counters only grow within an instance; a smaller value means a damaged report.
        if (now > was) delta[op] = now - was;
      }
      seen[id] = { ...before, ...maxCounts(before, entry.counts) };
      let agg = keys.get(id);
      if (agg === undefined) {
        agg = {
          namespace: entry.namespace,
          name: entry.name,
          lastUsedTime: entry.lastUsedTime,
          newCounts: {},
        };
        if (entry.uid !== undefined) agg.uid = entry.uid;
        keys.set(id, agg);
      } else if (entry.lastUsedTime > agg.lastUsedTime) {
        agg.lastUsedTime = entry.lastUsedTime;
        if (entry.uid !== undefined) agg.uid = entry.uid;
      }
      for (const [op, n] of Object.entries(delta) as Array<[KeyOperation, number]>) {
        agg.newCounts[op] = (agg.newCounts[op] ?? 0) + n;
      }
    }
  }
  return { keys, cursor: next };
}

function maxCounts(
  a: Partial<Record<KeyOperation, number>>,
  b: Partial<Record<KeyOperation, number>>,
): Partial<Record<KeyOperation, number>> {
  const out: Partial<Record<KeyOperation, number>> = {};
  for (const op of KEY_OPERATIONS) {
    const v = Math.max(a[op] ?? 0, b[op] ?? 0);
    if (v > 0) out[op] = v;
  }
  return out;
}

function isKeyUsage(value: unknown): value is KeyUsageReport {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  if (typeof v.namespace !== 'string' || typeof v.name !== 'string') return false;
  if (typeof v.lastUsedTime !== 'number' || !Number.isFinite(v.lastUsedTime)) return false;
  if (typeof v.counts !== 'object' || v.counts === null) return false;
  for (const n of Object.values(v.counts as Record<string, unknown>)) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return false;
  }
  if (v.versions !== undefined && (typeof v.versions !== 'object' || v.versions === null)) return false;
  return v.uid === undefined || typeof v.uid === 'string';
}

/** Parses a ConfigMap's `usage.json`; undefined when absent or malformed. */
export function parseUsageReport(data: Record<string, string> | undefined): UsageReport | undefined {
  const raw = data?.[USAGE_REPORT_ENTRY];
  if (raw === undefined) return undefined;
  try {
    const report = JSON.parse(raw) as UsageReport;
    return READABLE_FORMATS.has(report?.format) ? report : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The ConfigMap name of shard `shard` of replica `identity` (lowercased; anything but letters,
 * digits and `-` replaced, so the `.` before a shard number is unambiguous; ≤ 253 characters).
 */
export function usageReportName(identity: string, shard = 0): string {
  const safe = identity
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
  const base = `${USAGE_REPORT_PREFIX}${safe || 'engine'}`.slice(0, 240).replace(/-+$/, '');
  return shard === 0 ? base : `${base}.${shard}`;
}

/** The shard of key `id` (`<namespace>/<name>`) among `shards`: FNV-1a, stable across processes. */
export function usageShardOf(id: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shards;
}

/** The shard count for `keys` used keys: a power of two with at most ~USAGE_SHARD_KEYS keys each. */
export function usageShardCount(keys: number): number {
  let shards = 1;
  while (keys > shards * USAGE_SHARD_KEYS) shards *= 2;
  return shards;
}

/** The per-version counter of random-nonce encryptions reserved (see `UsageCounter.reserveNonces`). */
export const NONCE_COUNTER = 'nonces';

/** Counts one engine instance's uses per key (the hot path only bumps numbers). */
export class UsageCounter {
  readonly #keys = new Map<string, KeyUsageReport>();
  /** The counter version at each key's last use: a publisher rewrites only shards that moved. */
  readonly #touched = new Map<string, number>();
  #version = 0;

  /** Records `count` uses of `op` on `namespace/name` (Key `uid`) at `now`. */
  record(
    namespace: string,
    name: string,
    uid: string | undefined,
    op: KeyOperation,
    count: number,
    now: number,
  ): void {
    if (count <= 0) return;
    const id = `${namespace}/${name}`;
    let entry = this.#keys.get(id);
    if (entry === undefined) {
      entry = { namespace, name, lastUsedTime: now, counts: {} };
      this.#keys.set(id, entry);
    }
    if (uid !== undefined) entry.uid = uid;
    entry.counts[op] = (entry.counts[op] ?? 0) + count;
    if (now > entry.lastUsedTime) entry.lastUsedTime = now;
    this.#version++;
    this.#touched.set(id, this.#version);
  }

  /**
   * Records that this instance has reserved `reserved` random-nonce encryptions (cumulative) under
   * `version` of `namespace/name`: the per-version counter {@link NONCE_COUNTER}. Published before
   * any of them is spent (engine/cluster/nonce-reservations.ts).
   */
  reserveNonces(
    namespace: string,
    name: string,
    uid: string | undefined,
    version: number,
    reserved: number,
  ): void {
    const id = `${namespace}/${name}`;
    let entry = this.#keys.get(id);
    if (entry === undefined) {
      // Not a use yet: lastUsedTime 0 leaves the Key's lastUsedTime alone.
      entry = { namespace, name, lastUsedTime: 0, counts: {} };
      this.#keys.set(id, entry);
    }
    if (uid !== undefined) entry.uid = uid;
    entry.versions ??= {};
    const counters = entry.versions[String(version)] ?? {};
    entry.versions[String(version)] = counters;
    counters[NONCE_COUNTER] = Math.max(counters[NONCE_COUNTER] ?? 0, reserved);
    this.#version++;
    this.#touched.set(id, this.#version);
  }

  /** The latest use of `namespace/name` by this instance, if any. */
  lastUsed(namespace: string, name: string): number | undefined {
    const t = this.#keys.get(`${namespace}/${name}`)?.lastUsedTime;
    // 0: only nonces were reserved, nothing was used yet.
    return t === undefined || t <= 0 ? undefined : t;
  }

  /** Bumps on every record: a reporter writes only when this moved. */
  get version(): number {
    return this.#version;
  }

  /** Keys counted so far. */
  get size(): number {
    return this.#keys.size;
  }

  /** A copy of every counter, for a report. */
  snapshot(): Record<string, KeyUsageReport> {
    const out: Record<string, KeyUsageReport> = {};
    for (const [id, e] of this.#keys) out[id] = copyEntry(e);
    return out;
  }

  /**
   * The counters split over `shards`, each with the counter version of its latest use (0 for an
   * empty shard), for a publisher that writes only the shards that moved.
   */
  shardSnapshot(shards: number): Array<{ keys: Record<string, KeyUsageReport>; version: number }> {
    const out = Array.from({ length: shards }, () => ({
      keys: {} as Record<string, KeyUsageReport>,
      version: 0,
    }));
    for (const [id, e] of this.#keys) {
      const shard = out[usageShardOf(id, shards)]!;
      shard.keys[id] = copyEntry(e);
      shard.version = Math.max(shard.version, this.#touched.get(id) ?? 0);
    }
    return out;
  }
}

function copyEntry(e: KeyUsageReport): KeyUsageReport {
  const out: KeyUsageReport = { ...e, counts: { ...e.counts } };
  if (e.versions !== undefined)
    out.versions = Object.fromEntries(Object.entries(e.versions).map(([v, c]) => [v, { ...c }]));
  return out;
}
