import { describe, expect, it } from 'vitest';
import { KEY_OPERATIONS } from '../keys/model.ts';
import {
  aggregateUsageReports,
  parseUsageReport,
  USAGE_REPORT_ENTRY,
  UsageCounter,
  type UsageReport,
  usageReportName,
  usageShardCount,
  usageShardOf,
} from './usage-report.ts';

function report(identity: string, instance: string, counter: UsageCounter, at = 1_000): UsageReport {
  return { format: 1, identity, instance, startedTime: 0, reportedTime: at, keys: counter.snapshot() };
}

describe('aggregateUsageReports', () => {
  it('takes the latest use over replicas and sums their counts', () => {
    const a = new UsageCounter();
    const b = new UsageCounter();
    a.record('ns', 'k1', 'uid-1', 'encrypt', 3, 100);
    b.record('ns', 'k1', 'uid-1', 'encrypt', 2, 300);
    b.record('ns', 'k1', 'uid-1', 'decrypt', 1, 250);
    a.record('ns', 'k2', undefined, 'sign', 5, 50);
    const { keys } = aggregateUsageReports([report('a', 'i1', a), report('b', 'i2', b)]);
    expect(keys.get('ns/k1')).toEqual({
      namespace: 'ns',
      name: 'k1',
      uid: 'uid-1',
      lastUsedTime: 300,
      newCounts: { encrypt: 5, decrypt: 1 },
    });
    expect(keys.get('ns/k2')).toEqual({
      namespace: 'ns',
      name: 'k2',
      lastUsedTime: 50,
      newCounts: { sign: 5 },
    });
  });

  it('counts every use exactly once across repeated reads with the cursor', () => {
    const a = new UsageCounter();
    a.record('ns', 'k1', 'u', 'encrypt', 4, 100);
    const first = aggregateUsageReports([report('a', 'i1', a)]);
    expect(first.keys.get('ns/k1')?.newCounts).toEqual({ encrypt: 4 });
    // Read again without new uses: nothing new.
    const again = aggregateUsageReports([report('a', 'i1', a)], first.cursor);
    expect(again.keys.get('ns/k1')?.newCounts).toEqual({});
    a.record('ns', 'k1', 'u', 'encrypt', 1, 200);
    a.record('ns', 'k1', 'u', 'verify', 2, 200);
    const third = aggregateUsageReports([report('a', 'i1', a)], again.cursor);
    expect(third.keys.get('ns/k1')).toMatchObject({
      lastUsedTime: 200,
      newCounts: { encrypt: 1, verify: 2 },
    });
  });

  it('does not recount a report that was missing from one read', () => {
    const a = new UsageCounter();
    a.record('ns', 'k1', 'u', 'encrypt', 4, 100);
    const first = aggregateUsageReports([report('a', 'i1', a)]);
    const missing = aggregateUsageReports([], first.cursor);
    expect(missing.keys.size).toBe(0);
    const back = aggregateUsageReports([report('a', 'i1', a)], missing.cursor);
    expect(back.keys.get('ns/k1')?.newCounts).toEqual({});
  });

  it('starts a restarted replica (a new instance) from zero and forgets the old instance', () => {
    const old = new UsageCounter();
    old.record('ns', 'k1', 'u', 'encrypt', 10, 100);
    const first = aggregateUsageReports([report('a', 'i1', old)]);
    const fresh = new UsageCounter();
    fresh.record('ns', 'k1', 'u', 'encrypt', 2, 500);
    const second = aggregateUsageReports([report('a', 'i2', fresh)], first.cursor);
    expect(second.keys.get('ns/k1')?.newCounts).toEqual({ encrypt: 2 });
    expect(Object.keys(second.cursor.seen)).toEqual(['a/i2']);
  });

  it('skips malformed reports and entries', () => {
    const bad = {
      format: 1,
      identity: 'x',
      instance: 'y',
      startedTime: 0,
      reportedTime: 0,
      keys: {
        'ns/k1': { namespace: 'ns', name: 'k1', lastUsedTime: 'yesterday', counts: {} },
        'ns/k2': { namespace: 'ns', name: 'k2', lastUsedTime: 5, counts: { encrypt: -3 } },
        'ns/other': { namespace: 'ns', name: 'k3', lastUsedTime: 5, counts: { encrypt: 1 } },
      },
    } as unknown as UsageReport;
    const wrongFormat = { ...bad, format: 3 } as UsageReport;
    expect(aggregateUsageReports([bad, wrongFormat, null as unknown as UsageReport]).keys.size).toBe(0);
  });
});

describe('report helpers', () => {
  it('parses usage.json and refuses garbage', () => {
    const c = new UsageCounter();
    c.record('ns', 'k1', undefined, 'encrypt', 1, 1);
    const r = report('a', 'i', c);
    expect(parseUsageReport({ 'usage.json': JSON.stringify(r) })).toEqual(r);
    expect(parseUsageReport({ 'usage.json': '{' })).toBeUndefined();
    expect(parseUsageReport({})).toBeUndefined();
  });

  it('names the shard ConfigMaps after a sanitized identity, unambiguously', () => {
    expect(usageReportName('engine-7d9f_ABC')).toBe('keyward-usage-engine-7d9f-abc');
    expect(usageReportName('__')).toBe('keyward-usage-engine');
    expect(usageReportName('engine.a', 3)).toBe('keyward-usage-engine-a.3');
    // A dot never comes from the identity, so identity "a" shard 1 and identity "a.1" differ.
    expect(usageReportName('a', 1)).not.toBe(usageReportName('a.1'));
    expect(usageReportName('x'.repeat(400), 7).length).toBeLessThanOrEqual(253);
  });

  it('counts with a version that moves on every use', () => {
    const c = new UsageCounter();
    expect(c.version).toBe(0);
    c.record('ns', 'k', undefined, 'encrypt', 0, 1);
    expect(c.version).toBe(0);
    c.record('ns', 'k', undefined, 'encrypt', 2, 7);
    expect(c.version).toBe(1);
    expect(c.lastUsed('ns', 'k')).toBe(7);
  });
});

describe('shards', () => {
  // The finding this pins: one ConfigMap per replica with every key hit the 1 MiB object limit at
  // about 5-6k used keys.
  it('keep every report ConfigMap far below 1 MiB past 10,000 used keys, even with the longest names', () => {
    const c = new UsageCounter();
    const ns = 'n'.repeat(63);
    for (let i = 0; i < 12_000; i++) {
      const name = `k${String(i).padStart(14, '0')}`;
      for (const op of KEY_OPERATIONS) {
        c.record(ns, name, '0f6c2c9e-3a63-4b9b-9d5e-1c2b3a4d5e6f', op, 9_007_199_254_740, 1_800_000_000_000);
      }
    }
    const shards = usageShardCount(c.size);
    expect(shards).toBe(16);
    const snapshot = c.shardSnapshot(shards);
    let keys = 0;
    for (const [shard, s] of snapshot.entries()) {
      const report: UsageReport = {
        format: 2,
        identity: 'keyward-engine-5d8c7b9f4-x2x9z',
        instance: '7f3c2a1e-0000-4000-8000-000000000000',
        startedTime: 1_800_000_000_000,
        reportedTime: 1_800_000_000_000,
        shard,
        shards,
        keys: s.keys,
      };
      const bytes = Buffer.byteLength(
        JSON.stringify({ data: { [USAGE_REPORT_ENTRY]: JSON.stringify(report) } }),
      );
      expect(bytes).toBeLessThan(512 * 1024);
      keys += Object.keys(s.keys).length;
    }
    expect(keys).toBe(12_000);
  });

  it('grow in powers of two and spread keys evenly', () => {
    expect([0, 1, 1000, 1001, 2000, 2001, 10_000].map(usageShardCount)).toEqual([1, 1, 1, 2, 2, 4, 16]);
    const counts = new Array(8).fill(0);
    for (let i = 0; i < 8000; i++) counts[usageShardOf(`ns/key-${i}`, 8)]++;
    for (const n of counts) expect(n).toBeGreaterThan(800);
    expect(usageShardOf('ns/key-1', 8)).toBe(usageShardOf('ns/key-1', 8));
  });

  it('count a key once when it shows in two shards of one instance (while the shard count doubles)', () => {
    const c = new UsageCounter();
    c.record('ns', 'k1', 'u', 'encrypt', 5, 100);
    const one = { ...report('a', 'i1', c), shard: 0, shards: 1 };
    const first = aggregateUsageReports([one]);
    c.record('ns', 'k1', 'u', 'encrypt', 2, 200);
    // The new shard has the new total; the old one still shows the old total.
    const moved = { ...report('a', 'i1', c), shard: 1, shards: 2 };
    const stale = { ...one, shards: 1 };
    const second = aggregateUsageReports([stale, moved], first.cursor);
    expect(second.keys.get('ns/k1')?.newCounts).toEqual({ encrypt: 2 });
    const third = aggregateUsageReports([moved, stale], second.cursor);
    expect(third.keys.get('ns/k1')?.newCounts).toEqual({});
  });

  it('write only the shards whose counters moved', () => {
    const c = new UsageCounter();
    for (let i = 0; i < 2500; i++) c.record('ns', `k${i}`, undefined, 'encrypt', 1, 1);
    const before = c.shardSnapshot(4).map((s) => s.version);
    c.record('ns', 'k7', undefined, 'decrypt', 1, 2);
    const after = c.shardSnapshot(4).map((s) => s.version);
    const moved = after.filter((v, i) => v !== before[i]);
    expect(moved).toHaveLength(1);
  });
});
