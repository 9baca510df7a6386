import { createSecretKey, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkpointKeyMaterial } from '../audit/checkpoint-key.ts';
import { masterKeyCheckValue } from '../crypto/master-keys.ts';
import { wrapMaterial } from '../crypto/wrap.ts';
import { createKeyRecord } from '../keys/lifecycle.ts';
import {
  MASTER_KEY_CURRENT_ENTRY,
  MASTER_KEY_ENTRY,
  masterKeyEntry,
  masterKeyMismatch,
  masterKeysFromSecret,
  recordChecks,
  retiredAuditKeysFromSecret,
  withoutMasterKeyVersions,
} from './master-key-secret.ts';
import type { StoredKey } from './material-secret.ts';

const b64 = (b: Buffer): string => b.toString('base64');

function storedUnder(raw: Buffer, masterVersion = 1): StoredKey {
  const keys = {
    current: masterVersion,
    key: (v: number) => (v === masterVersion ? createSecretKey(raw) : undefined),
  };
  const wrapped = wrapMaterial(
    keys,
    { store: 'ns', name: 'k', usage: 'AES256', version: 1 },
    randomBytes(32),
  );
  return {
    record: createKeyRecord(
      {
        namespace: 'ns',
        name: 'k',
        spec: {
          usage: 'AES256',
          convergent: false,
          boundary: 'Global',
          rotation: { enabled: true, periodDays: 90 },
          memo: '',
        },
        firstVersion: { version: 1, createdTime: 1, wrapped: b64(wrapped) },
      },
      1,
    ),
  };
}

describe('masterKeysFromSecret', () => {
  it('reads version 1 from master.key and later versions from master.key.v<N>, current the highest', () => {
    const a = randomBytes(32);
    const b = randomBytes(32);
    const set = masterKeysFromSecret({ data: { [MASTER_KEY_ENTRY]: b64(a), [masterKeyEntry(2)]: b64(b) } });
    expect(set.versions).toEqual([1, 2]);
    expect(set.current).toBe(2);
    expect(set.checks.get(1)).toBe(masterKeyCheckValue(a));
    expect(set.checks.get(2)).toBe(masterKeyCheckValue(b));
  });

  it('follows an explicit current entry, and refuses one it does not hold or a wrong size (no bytes in the error)', () => {
    const a = randomBytes(32);
    const b = randomBytes(32);
    const data = { [MASTER_KEY_ENTRY]: b64(a), [masterKeyEntry(2)]: b64(b) };
    expect(
      masterKeysFromSecret({ data: { ...data, [MASTER_KEY_CURRENT_ENTRY]: b64(Buffer.from('1')) } }).current,
    ).toBe(1);
    expect(() =>
      masterKeysFromSecret({ data: { ...data, [MASTER_KEY_CURRENT_ENTRY]: b64(Buffer.from('3')) } }),
    ).toThrow(/current version 3/);
    const short = randomBytes(16);
    let message = '';
    try {
      masterKeysFromSecret({ data: { [MASTER_KEY_ENTRY]: b64(short) } });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/32 bytes/);
    expect(message).not.toContain(b64(short));
  });
});

describe('masterKeyMismatch', () => {
  const right = randomBytes(32);
  const wrong = randomBytes(32);
  const set = (raw: Buffer) => masterKeysFromSecret({ data: { [MASTER_KEY_ENTRY]: b64(raw) } });

  it('accepts material whose recorded check value matches, and names what to do when it does not', () => {
    const s = storedUnder(right);
    const checked = { ...s, masterKeyChecks: recordChecks(s, set(right)) };
    expect(masterKeyMismatch(checked, set(right), 'ns/mk')).toBeUndefined();
    const why = masterKeyMismatch(checked, set(wrong), 'ns/mk');
    expect(why).toMatch(/master-key version 1 in ns\/mk does not match/);
    expect(why).toMatch(/restore the master-key Secret ns\/mk/);
    for (const raw of [right, wrong]) {
      expect(why).not.toContain(b64(raw));
      expect(why).not.toContain(raw.toString('hex'));
    }
  });

  it('checks material written before check values by unwrapping one blob', () => {
    const s = storedUnder(right);
    expect(masterKeyMismatch(s, set(right), 'ns/mk')).toBeUndefined();
    expect(masterKeyMismatch(s, set(wrong), 'ns/mk')).toMatch(/does not unwrap/);
  });

  it('reports a missing Secret and a master-key version the Secret does not hold', () => {
    const s = storedUnder(right, 2);
    expect(masterKeyMismatch(s, undefined, 'ns/mk')).toMatch(/is missing/);
    expect(masterKeyMismatch(s, set(right), 'ns/mk')).toMatch(/version 2, which .* does not hold/);
  });

  it('recordChecks keeps a recorded check value (a write never vouches for material it did not wrap)', () => {
    const s = { ...storedUnder(right), masterKeyChecks: { '1': 'recorded' } };
    expect(recordChecks(s, set(wrong))).toEqual({ '1': 'recorded' });
  });
});

describe('retiring a master-key version', () => {
  it('erases the key and keeps its audit checkpoint key (audit.key.v<N>: 32 key bytes and the 8-byte id)', () => {
    const v1 = randomBytes(32);
    const v2 = randomBytes(32);
    const data = {
      [MASTER_KEY_ENTRY]: b64(v1),
      [masterKeyEntry(2)]: b64(v2),
      [MASTER_KEY_CURRENT_ENTRY]: b64(Buffer.from('2')),
    };
    const held = masterKeysFromSecret({ data });
    const after = withoutMasterKeyVersions(data, held, new Set([1, 2]));
    // The current version is never retired; version 1's key is gone, its audit key kept.
    expect(after[MASTER_KEY_ENTRY]).toBeUndefined();
    expect(after[masterKeyEntry(2)]).toBe(b64(v2));
    expect(JSON.stringify(after)).not.toContain(b64(v1));
    const kept = retiredAuditKeysFromSecret({ data: after });
    const expected = checkpointKeyMaterial(v1);
    expect(kept).toHaveLength(1);
    expect(kept[0]?.version).toBe(1);
    expect(kept[0]?.id).toBe(expected.id);
    expect(kept[0]?.key.equals(Buffer.from(expected.key))).toBe(true);
    // The Secret still parses as master keys (the audit entry is not one).
    expect(masterKeysFromSecret({ data: after }).versions).toEqual([2]);
  });

  it('refuses a malformed kept audit key, naming the entry, not bytes', () => {
    expect(() => retiredAuditKeysFromSecret({ data: { 'audit.key.v1': b64(Buffer.alloc(12, 9)) } })).toThrow(
      'the master-key Secret must hold 40 bytes in data["audit.key.v1"]',
    );
    expect(() => retiredAuditKeysFromSecret({ data: { 'audit.key.vx': b64(Buffer.alloc(40)) } })).toThrow(
      /malformed entry data\["audit.key.vx"\]/,
    );
  });
});
