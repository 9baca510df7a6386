import { describe, expect, it } from 'vitest';
import { TtlCache } from './ttl-cache.ts';

describe('TtlCache', () => {
  it('expires entries after their ttl', () => {
    let now = 1_000;
    const cache = new TtlCache<string, number>({ maxEntries: 10, now: () => now });
    cache.set('a', 1, 100);
    expect(cache.get('a')).toBe(1);
    now += 99;
    expect(cache.get('a')).toBe(1);
    now += 1;
    expect(cache.get('a')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('evicts the least recently used entry when full', () => {
    const cache = new TtlCache<string, number>({ maxEntries: 2 });
    cache.set('a', 1, 10_000);
    cache.set('b', 2, 10_000);
    expect(cache.get('a')).toBe(1); // a is now the most recent
    cache.set('c', 3, 10_000);
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBe(1);
    expect(cache.get('c')).toBe(3);
    expect(cache.size).toBe(2);
  });

  it('stores nothing for a ttl of zero or less', () => {
    const cache = new TtlCache<string, number>({ maxEntries: 2 });
    cache.set('a', 1, 0);
    cache.set('b', 1, -5);
    expect(cache.size).toBe(0);
    expect(() => new TtlCache({ maxEntries: 0 })).toThrow(RangeError);
  });
});
