import { describe, expect, it } from 'vitest';
import { BufferPool, sizeClass } from './buffers.ts';

describe('BufferPool', () => {
  it('hands out power-of-two size classes from 4 KiB', () => {
    expect(sizeClass(1)).toBe(4096);
    expect(sizeClass(4096)).toBe(4096);
    expect(sizeClass(4097)).toBe(8192);
    expect(sizeClass(1_100_000)).toBe(2 ** 21);
    expect(new BufferPool(0).take(5000).byteLength).toBe(8192);
  });

  it('zeroes what was used of a buffer given back before anyone can take it again', () => {
    const pool = new BufferPool(1 << 20);
    const buffer = pool.take(100);
    new Uint8Array(buffer, 0, 100).fill(0xaa);
    pool.give(buffer, 100);
    const again = pool.take(100);
    expect(again).toBe(buffer);
    expect(new Uint8Array(again).every((b) => b === 0)).toBe(true);
  });

  it('zeroes a buffer even when it does not keep it', () => {
    const pool = new BufferPool(0);
    const buffer = pool.take(10);
    const bytes = new Uint8Array(buffer);
    bytes.fill(7);
    pool.give(buffer);
    expect(pool.retained).toBe(0);
    expect(bytes.every((b) => b === 0)).toBe(true);
  });

  it('keeps at most maxRetained bytes, and drops what does not fit', () => {
    const pool = new BufferPool(3 * 4096);
    const buffers = Array.from({ length: 5 }, () => pool.take(1));
    for (const b of buffers) pool.give(b);
    expect(pool.retained).toBe(3 * 4096);
    // Taking reuses what was kept, then allocates.
    const taken = Array.from({ length: 5 }, () => pool.take(1));
    expect(taken.filter((b) => buffers.includes(b))).toHaveLength(3);
    expect(pool.retained).toBe(0);
  });

  it('ignores a detached buffer (it moved to a thread that died)', () => {
    const pool = new BufferPool(1 << 20);
    const buffer = pool.take(10);
    structuredClone(buffer, { transfer: [buffer] });
    pool.give(buffer);
    expect(pool.retained).toBe(0);
  });

  it('a burst of large tasks does not leave later small tasks allocating a fresh buffer each time', () => {
    const pool = new BufferPool(4 * 65536);
    // The large tasks fill the budget...
    const large = Array.from({ length: 4 }, () => pool.take(60_000));
    for (const b of large) pool.give(b);
    expect(pool.retained).toBe(4 * 65536);
    // ...then only small tasks come: once one is given back, it is kept, displacing a large one.
    const small = pool.take(5000);
    pool.give(small);
    expect(pool.take(5000)).toBe(small);
    expect(pool.retained).toBe(3 * 65536);
  });

  it('does not displace buffers of a class taken more recently than the one given back', () => {
    const pool = new BufferPool(2 * 8192);
    const eightKiB = [pool.take(5000), pool.take(5000), pool.take(5000)];
    const fourKiB = pool.take(100); // the class taken last
    pool.give(eightKiB[0]!);
    pool.give(eightKiB[1]!);
    // The 4 KiB class was taken more recently: it displaces one 8 KiB buffer.
    pool.give(fourKiB);
    expect(pool.retained).toBe(8192 + 4096);
    // The 8 KiB class was taken less recently than the 4 KiB one: it cannot displace it.
    pool.give(eightKiB[2]!);
    expect(pool.retained).toBe(8192 + 4096);
    expect(pool.take(100)).toBe(fourKiB);
  });
});
