import { describe, expect, it } from 'vitest';
import { baseKeyId, type KeyVersionIdentity, nextKeyId, parseKeyId } from './key-id.ts';

const v1: KeyVersionIdentity = {
  namespace: 'default',
  name: 'etcd-kek',
  keyCreatedTime: Date.parse('2026-01-01T00:00:00Z'),
  version: 1,
  versionCreatedTime: Date.parse('2026-01-01T00:00:00Z'),
};
const v2: KeyVersionIdentity = { ...v1, version: 2, versionCreatedTime: Date.parse('2026-04-01T00:00:00Z') };

describe('key_id of a key version', () => {
  it('is stable: the same version always gives the same key_id, whatever case the name is in', () => {
    expect(baseKeyId(v1)).toBe(baseKeyId({ ...v1 }));
    expect(baseKeyId({ ...v1, name: 'Etcd-KEK' })).toBe(baseKeyId(v1));
    expect(baseKeyId(v1)).toMatch(/^keyward\/default\/etcd-kek\/v1\/[0-9a-f]{16}$/);
  });

  it('changes on rotation, so the apiserver notices and re-wraps', () => {
    expect(baseKeyId(v2)).not.toBe(baseKeyId(v1));
    expect(parseKeyId(baseKeyId(v2))?.version).toBe(2);
  });

  it('differs for a key destroyed and created again under the same name (a new incarnation)', () => {
    const again = {
      ...v1,
      keyCreatedTime: v1.keyCreatedTime + 86_400_000,
      versionCreatedTime: v1.keyCreatedTime + 86_400_000,
    };
    expect(baseKeyId(again)).not.toBe(baseKeyId(v1));
    expect(baseKeyId(again).slice(0, -16)).toBe(baseKeyId(v1).slice(0, -16));
  });

  it('differs between keys and namespaces', () => {
    expect(baseKeyId({ ...v1, name: 'other-kek' })).not.toBe(baseKeyId(v1));
    expect(baseKeyId({ ...v1, namespace: 'kube-system' })).not.toBe(baseKeyId(v1));
  });

  it('stays far below the 1 kB the apiserver allows, even for the longest names', () => {
    const longest = baseKeyId({
      ...v1,
      namespace: 'n'.repeat(63),
      name: `a${'b'.repeat(14)}`,
      version: 999_999_999,
    });
    expect(Buffer.byteLength(`${longest}~999999999`)).toBeLessThan(200);
  });

  it('parses back, with or without a derivative suffix, and refuses anything else', () => {
    const id = baseKeyId(v2);
    expect(parseKeyId(id)).toEqual({
      namespace: 'default',
      name: 'etcd-kek',
      version: 2,
      tag: id.slice(-16),
      reinstated: 0,
      base: id,
    });
    expect(parseKeyId(`${id}~3`)).toMatchObject({ reinstated: 3, base: id, version: 2 });
    for (const bad of [
      '',
      'keyward/default/etcd-kek/v0/0123456789abcdef',
      'keyward/default/etcd-kek/v01/0123456789abcdef',
      'keyward/default/etcd-kek/v1/0123456789ABCDEF',
      'keyward/default/etcd-kek/v1/0123456789abcde',
      'keyward/Default/etcd-kek/v1/0123456789abcdef',
      'keyward/default/1kek/v1/0123456789abcdef',
      'keyward/default/etcd-kek/v1/0123456789abcdef~0',
      'keyward/default/etcd-kek/v1/0123456789abcdef~',
      'keyward/default/etcd-kek/v1/0123456789abcdef/extra',
      'other/default/etcd-kek/v1/0123456789abcdef',
    ]) {
      expect(parseKeyId(bad), bad).toBeUndefined();
    }
  });
});

describe('nextKeyId: a key_id is never reused, even when an older key comes back', () => {
  const A = baseKeyId(v1);
  const B = baseKeyId(v2);

  it('keeps reporting the same key_id while the key does not change (no flip-flop)', () => {
    let history: readonly string[] = [];
    const first = nextKeyId(history, A);
    expect(first).toMatchObject({ keyId: A, changed: true });
    history = first.history;
    const again = nextKeyId(history, A);
    expect(again).toEqual({ keyId: A, history, changed: false });
  });

  it('reports A, B, A as A, B, A~1, and each later return with the next number', () => {
    const reported: string[] = [];
    let history: readonly string[] = [];
    for (const base of [A, B, A, A, B, A]) {
      const next = nextKeyId(history, base);
      history = next.history;
      reported.push(next.keyId);
    }
    expect(reported).toEqual([A, B, `${A}~1`, `${A}~1`, `${B}~1`, `${A}~2`]);
    // Every key_id that was ever moved away from stays unique.
    expect(new Set(history).size).toBe(history.length);
  });
});
