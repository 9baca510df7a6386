import { createSecretKey, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
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
