import { describe, expect, it } from 'vitest';
import { measureTask, TaskRegion, writeTask } from './layout.ts';

const items = [
  [Buffer.from('alpha'), undefined],
  [Buffer.alloc(0), Buffer.from('aad')],
  [Buffer.from('a longer plaintext'), Buffer.from('x')],
];
const read = (i: number, f: number) => items[i]![f];
const bound = (input: number) => input + 28;

describe('task layout', () => {
  it('carries every field and an output slot per item, as measured', () => {
    const size = measureTask(items.length, 2, read, bound);
    expect(size.input).toBe(5 + 3 + 19);
    expect(size.output).toBe(5 + 28 + (3 + 28) + (19 + 28));
    const memory = new ArrayBuffer(size.bytes);
    writeTask(memory, size, read, bound);
    const region = new TaskRegion(memory);
    expect(region.count).toBe(3);
    expect(region.fields).toBe(2);
    expect(region.field(0, 0).toString()).toBe('alpha');
    expect(region.field(0, 1)).toHaveLength(0);
    expect(region.field(1, 0)).toHaveLength(0);
    expect(region.field(1, 1).toString()).toBe('aad');
    expect(region.field(2, 0).toString()).toBe('a longer plaintext');
    expect(region.used).toBeLessThanOrEqual(size.bytes);
  });

  it('takes outputs up to their slot, refuses larger ones, and keeps statuses apart', () => {
    const size = measureTask(items.length, 2, read, bound);
    const memory = new ArrayBuffer(size.bytes);
    writeTask(memory, size, read, bound);
    const worker = new TaskRegion(memory);
    expect(worker.setOutput(0, Buffer.alloc(33, 1))).toBe(true);
    expect(worker.setOutput(1, Buffer.alloc(32, 2))).toBe(false);
    worker.setStatus(1, 2);
    expect(worker.setOutput(2, Buffer.from('out'))).toBe(true);
    const main = new TaskRegion(memory);
    expect(main.status(0)).toBe(0);
    expect(main.output(0)).toEqual(Buffer.alloc(33, 1));
    expect(main.status(1)).toBe(2);
    expect(main.output(2).toString()).toBe('out');
    // Outputs never overlap the inputs of later items.
    expect(main.field(2, 0).toString()).toBe('a longer plaintext');
  });

  it('wipes the inputs (plaintexts) and leaves the outputs', () => {
    const size = measureTask(items.length, 2, read, bound);
    const memory = new ArrayBuffer(size.bytes);
    writeTask(memory, size, read, bound);
    const region = new TaskRegion(memory);
    region.setOutput(0, Buffer.from('sealed'));
    region.wipeInputs();
    expect(region.field(2, 0).every((b) => b === 0)).toBe(true);
    expect(region.output(0).toString()).toBe('sealed');
  });
});
