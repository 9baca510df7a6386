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
});
