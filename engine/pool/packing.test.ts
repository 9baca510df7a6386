import { describe, expect, it } from 'vitest';
import { PackedBatch, packBatch } from './packing.ts';

describe('packBatch / PackedBatch', () => {
  it('round-trips items with empty and missing fields', () => {
    const items = [
      [Buffer.from('alpha'), undefined, Buffer.from('x')],
      [Buffer.alloc(0), Buffer.from('beta'), undefined],
      [Buffer.alloc(300, 7), Buffer.from([0, 255]), Buffer.from('zz')],
    ];
    const packed = new PackedBatch(packBatch(items.length, 3, (i, f) => items[i]![f]));
    expect(packed.count).toBe(3);
    expect(packed.fields).toBe(3);
    for (let i = 0; i < items.length; i++) {
      for (let f = 0; f < 3; f++) {
        expect(Buffer.compare(packed.field(i, f), items[i]![f] ?? Buffer.alloc(0))).toBe(0);
      }
    }
  });

  it('views share the one buffer (no copy per field)', () => {
    const buffer = packBatch(2, 1, (i) => Buffer.from(`item${i}`));
    const packed = new PackedBatch(buffer);
    expect(packed.field(1, 0).buffer).toBe(buffer);
  });

  it('rejects a truncated buffer instead of reading past it', () => {
    const buffer = packBatch(4, 2, () => Buffer.alloc(16, 1));
    expect(() => new PackedBatch(buffer.slice(0, 4))).toThrow(RangeError);
    expect(() => new PackedBatch(buffer.slice(0, buffer.byteLength - 1))).toThrow(RangeError);
  });
});
