import { describe, expect, it } from 'vitest';
import { runWorkers, WorkQueue } from './workqueue.ts';

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('WorkQueue', () => {
  it('de-duplicates queued keys and hands them out oldest first', () => {
    const c = clock();
    const q = new WorkQueue({ now: c.now });
    q.add('a');
    c.advance(1);
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    expect(q.take()).toBe('a');
    expect(q.take()).toBe('b');
    expect(q.take()).toBeUndefined();
  });

  it('keeps the earliest due time and holds delayed keys until then', () => {
    const c = clock();
    const q = new WorkQueue({ now: c.now });
    q.addAt('k', c.now() + 5000);
    q.addAt('k', c.now() + 1000);
    q.addAt('k', c.now() + 9000);
    expect(q.take()).toBeUndefined();
    expect(q.nextDueIn()).toBe(1000);
    c.advance(1000);
    expect(q.take()).toBe('k');
    expect(q.length).toBe(0);
  });

  it('never hands one key to two workers; an add while processing requeues on done', () => {
    const c = clock();
    const q = new WorkQueue({ now: c.now });
    q.add('k');
    expect(q.take()).toBe('k');
    q.add('k');
    q.add('k');
    expect(q.take()).toBeUndefined();
    expect(q.length).toBe(0);
    q.done('k');
    expect(q.length).toBe(1);
    expect(q.take()).toBe('k');
    q.done('k');
    expect(q.length).toBe(0);
  });

  it('backs off exponentially per key up to the cap, and forget resets it', () => {
    const c = clock();
    const q = new WorkQueue({
      now: c.now,
      baseDelayMs: 100,
      maxDelayMs: 1000,
      ratePerSecond: 1000,
      burst: 1000,
    });
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      q.addRateLimited('k');
      delays.push(q.nextDueIn() ?? -1);
      c.advance(q.nextDueIn() ?? 0);
      expect(q.take()).toBe('k');
      q.done('k');
    }
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
    q.forget('k');
    q.addRateLimited('k');
    expect(q.nextDueIn()).toBe(100);
  });

  it('bounds retries overall with a token bucket', () => {
    const c = clock();
    const q = new WorkQueue({ now: c.now, baseDelayMs: 1, ratePerSecond: 10, burst: 2 });
    q.addRateLimited('a');
    q.addRateLimited('b');
    q.addRateLimited('c');
    q.addRateLimited('d');
    c.advance(1);
    expect([q.take(), q.take(), q.take()]).toEqual(['a', 'b', undefined]);
    c.advance(99);
    expect(q.take()).toBe('c');
    c.advance(100);
    expect(q.take()).toBe('d');
  });
});

describe('WorkQueue heap', () => {
  it('hands keys out in due order, like a sorted list, under random adds, re-adds and takes', () => {
    const c = clock(0);
    const q = new WorkQueue({ now: c.now });
    const model = new Map<string, number>();
    let seed = 42;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let step = 0; step < 20_000; step++) {
      const op = rand(10);
      if (op < 6) {
        const key = `k${rand(3000)}`;
        const due = c.now() + rand(10_000);
        q.addAt(key, due);
        const was = model.get(key);
        if (was === undefined || due < was) model.set(key, due);
      } else if (op < 9) {
        const key = q.take();
        const ready = [...model].filter(([, due]) => due <= c.now());
        if (ready.length === 0) {
          expect(key).toBeUndefined();
        } else {
          const earliest = Math.min(...ready.map(([, due]) => due));
          expect(key).toBeDefined();
          expect(model.get(key!)).toBe(earliest);
          model.delete(key!);
          q.done(key!);
        }
      } else {
        c.advance(rand(2_000));
      }
      expect(q.length).toBe(model.size);
    }
    const next = Math.min(...model.values());
    expect(q.nextDueIn()).toBe(Math.max(0, next - c.now()));
    expect(q.readyCount()).toBe([...model.values()].filter((d) => d <= c.now()).length);
  });

  it('counts ready work apart from keys parked for later', () => {
    const c = clock();
    const q = new WorkQueue({ now: c.now });
    for (let i = 0; i < 1000; i++) q.addAt(`parked-${i}`, c.now() + 90 * 86_400_000);
    q.add('now-1');
    q.add('now-2');
    q.addAt('soon', c.now() + 1000);
    expect(q.length).toBe(1003);
    expect(q.readyCount()).toBe(2);
    c.advance(1000);
    expect(q.readyCount()).toBe(3);
    expect(q.take()).toBe('now-1');
    expect(q.readyCount()).toBe(2);
  });
});

describe('runWorkers', () => {
  it('refuses a worker count that is not a positive integer', async () => {
    const q = new WorkQueue({ now: Date.now });
    for (const n of [0, -1, Number.NaN, 1.5]) {
      await expect(runWorkers(q, n, async () => undefined, new AbortController().signal)).rejects.toThrow(
        RangeError,
      );
    }
  });

  it('processes keys, retries failures and honours requeueAt, with real timers', async () => {
    const q = new WorkQueue({ now: Date.now, baseDelayMs: 5 });
    const seen: string[] = [];
    let failed = false;
    const ctl = new AbortController();
    const running = runWorkers(
      q,
      2,
      async (key) => {
        seen.push(key);
        if (key === 'fail' && !failed) {
          failed = true;
          throw new Error('boom');
        }
        if (key === 'later' && seen.filter((k) => k === 'later').length === 1)
          return { requeueAt: Date.now() + 20 };
        return undefined;
      },
      ctl.signal,
    );
    q.add('a');
    q.add('fail');
    q.add('later');
    await new Promise((r) => setTimeout(r, 150));
    ctl.abort();
    await running;
    expect(seen.filter((k) => k === 'a')).toHaveLength(1);
    expect(seen.filter((k) => k === 'fail')).toHaveLength(2);
    expect(seen.filter((k) => k === 'later')).toHaveLength(2);
  });
});
