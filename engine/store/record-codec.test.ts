import { describe, expect, it } from 'vitest';
import type { KeyRecord } from '../keys/model.ts';
import { crashRecord } from './fixtures/crash-record.ts';
import { decodeKeyRecord, encodeKeyRecord } from './record-codec.ts';

const good = (): KeyRecord => crashRecord('orders', 3);

function mutate(fn: (r: Record<string, unknown>) => void): string {
  const r = JSON.parse(encodeKeyRecord(good())) as Record<string, unknown>;
  fn(r);
  return JSON.stringify(r);
}

describe('record codec', () => {
  it('round-trips a record', () => {
    expect(decodeKeyRecord(encodeKeyRecord(good()), 'x')).toEqual(good());
  });

  it('keeps fields it does not know', () => {
    const text = mutate((r) => {
      r.futureField = { a: 1 };
    });
    expect((decodeKeyRecord(text, 'x') as unknown as Record<string, unknown>).futureField).toEqual({ a: 1 });
  });

  it('refuses truncated JSON, naming the file', () => {
    const text = encodeKeyRecord(good());
    expect(() => decodeKeyRecord(text.slice(0, text.length / 2), 'default/orders.json')).toThrow(
      /default\/orders\.json.*not valid JSON/,
    );
  });

  it.each<[string, (r: Record<string, unknown>) => void, RegExp]>([
    ['missing usage', (r) => delete r.usage, /usage/],
    ['missing memo', (r) => delete r.memo, /memo/],
    ['incomplete rotation', (r) => (r.rotation = { enabled: true }), /rotation/],
    ['bad state', (r) => (r.state = 'Gone'), /state/],
    ['pending without time', (r) => (r.state = 'PendingDeletion'), /deletionScheduledTime/],
    ['time outside pending', (r) => (r.deletionScheduledTime = 5), /deletionScheduledTime/],
    ['no versions', (r) => (r.versions = []), /versions/],
    ['current version missing', (r) => (r.currentVersion = 9), /currentVersion/],
    [
      'bad wrapped',
      (r) => ((r.versions as Array<Record<string, unknown>>)[0]!.wrapped = 'not base64!'),
      /wrapped/,
    ],
    ['bad count', (r) => (r.operationCounts = { encrypt: -1 }), /operationCounts/],
    ['unknown operation', (r) => (r.operationCounts = { melt: 1 }), /operationCounts/],
    ['bad name', (r) => (r.name = '../etc'), /name/],
    ['bad namespace', (r) => (r.namespace = 'A'), /namespace/],
    ['not an object', (r) => Object.assign(r, { createdTime: 'yesterday' }), /createdTime/],
  ])('refuses a record with %s', (_label, fn, pattern) => {
    expect(() => decodeKeyRecord(mutate(fn), 'f')).toThrow(pattern);
  });

  it('never echoes wrapped material in its errors', () => {
    const text = mutate((r) => {
      (r.versions as Array<Record<string, unknown>>)[0]!.wrapped = 'SECRETSECRET!';
    });
    try {
      decodeKeyRecord(text, 'f');
      expect.unreachable();
    } catch (err) {
      expect(String((err as Error).message)).not.toContain('SECRETSECRET');
      expect((err as { code?: string }).code).toBe('INTERNAL');
    }
  });
});
