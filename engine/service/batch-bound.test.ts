import { describe, expect, it } from 'vitest';
import { batchItemsBound } from './crypto-backend.ts';

const bound = (text: string): number => batchItemsBound(Buffer.from(text));

describe('batchItemsBound', () => {
  it('is the item count of an ordinary body', () => {
    expect(bound(JSON.stringify({ requests: [{ plaintext: 'YQ==' }, { plaintext: '' }, {}] }))).toBe(3);
    expect(bound('{"requests":[]}')).toBe(0);
    expect(bound('')).toBe(0);
  });

  it('never counts fewer objects than the body holds, however it is spelled', () => {
    expect(bound('{"\\u0072equests":[ {"pl\\u0061intext":"YQ=="} ,\n{ } ]}')).toBe(2);
    // Braces inside strings only raise it.
    expect(bound(JSON.stringify({ requests: [{ plaintext: '{{' }] }))).toBe(3);
  });

  it('stops at the most items a batch may hold', () => {
    expect(bound(`{"requests":[${'{},'.repeat(5000)}{}]}`)).toBe(1000);
    expect(bound('{'.repeat(1_000_000))).toBe(1000);
  });
});
