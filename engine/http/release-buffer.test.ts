import { describe, expect, it } from 'vitest';
import { releaseBuffer } from './release-buffer.ts';

type WasmMemory = new (d: { initial: number }) => { buffer: ArrayBuffer };

describe('releaseBuffer', () => {
  it('frees a large buffer that owns its whole ArrayBuffer: every view of it reads as empty', () => {
    const big = Buffer.allocUnsafeSlow(200_000).fill(7);
    const other = new Uint8Array(big.buffer);
    expect(releaseBuffer(big)).toBe(true);
    expect(big.byteLength).toBe(0);
    expect(other.byteLength).toBe(0);
    expect(big.buffer.byteLength).toBe(0);
  });

  it("leaves Buffers from Node's pool alone: other Buffers share that memory", () => {
    const a = Buffer.from('one small buffer');
    const b = Buffer.from('another, in the same pool');
    expect(a.buffer).toBe(b.buffer);
    expect(releaseBuffer(a)).toBe(false);
    expect(a.toString()).toBe('one small buffer');
    expect(b.toString()).toBe('another, in the same pool');
  });

  it('leaves a view of part of a buffer alone, and a buffer no larger than the pool', () => {
    const big = Buffer.allocUnsafeSlow(200_000).fill(1);
    const part = big.subarray(10);
    expect(releaseBuffer(part)).toBe(false);
    expect(big.byteLength).toBe(200_000);
    const small = new Uint8Array(Buffer.poolSize);
    expect(releaseBuffer(small)).toBe(false);
    expect(small.byteLength).toBe(Buffer.poolSize);
  });

  it('leaves shared and non-detachable memory alone instead of throwing', () => {
    const shared = new Uint8Array(new SharedArrayBuffer(100_000));
    expect(releaseBuffer(shared)).toBe(false);
    expect(shared.byteLength).toBe(100_000);
    // A WebAssembly memory's buffer cannot be detached by script (the lib has no WebAssembly types).
    const { Memory } = (globalThis as unknown as { WebAssembly: { Memory: WasmMemory } }).WebAssembly;
    const wasm = new Memory({ initial: 2 });
    const view = new Uint8Array(wasm.buffer);
    expect(releaseBuffer(view)).toBe(false);
    expect(wasm.buffer.byteLength).toBe(2 * 65536);
  });
});
