import { describe, expect, it } from 'vitest';
import {
  aggregateUsageReports,
  parseUsageReport,
  UsageCounter,
  type UsageReport,
  usageReportName,
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
    const wrongFormat = { ...bad, format: 2 } as UsageReport;
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

  it('names the ConfigMap after a sanitized identity', () => {
    expect(usageReportName('engine-7d9f_ABC')).toBe('keyward-usage-engine-7d9f-abc');
    expect(usageReportName('__')).toBe('keyward-usage-engine');
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
